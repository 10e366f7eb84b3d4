"""APT: optimal multiple removal (MRP, Zhao et al. 2024): a mask search, then the MRP optimum.

For a given mask the best weights are known in closed form: removing the set Q of a row jointly,
``dw* = - w_Q S^-1 Hinv[Q, :]`` with ``S = Hinv[Q, Q]``, the least-squares refit of the kept
weights (``docs/method.md``). What remains is the choice of the mask, by one of two searches
(option ``search``, :class:`apt.pruning.apt_options.AptOptions`):

* ``"admm"`` (default, :mod:`apt.pruning.admm`): ADMM over the whole matrix with the pruned
  fraction rising along a ramp; every step re-chooses the mask from weights that already carry
  the joint update of everything pruned so far. Its fixed point is the MRP optimum for its
  mask, so the refit (``refit="cg"`` or ``"exact"``) is an option, off by default.
* ``"blockwise"`` (:mod:`apt.pruning.blockwise`): the paper's MRP search in SparseGPT's
  left-to-right frame, N:M chosen by the joint loss over every pattern; refit by CG.

The damping is a ridge penalty against fitting the calibration tokens' noise: by default
``damping_for(n, T)`` x each input's own ``H[j, j]``. Every default, what was tried and the
result files: ``docs/decisions.md``.
"""

from __future__ import annotations

import torch

from apt.pruning.admm import admm_search
from apt.pruning.apt_options import SEARCHES, AptOptions  # noqa: F401  (re-exported)
from apt.pruning.blockwise import search_nm, search_unstructured
from apt.pruning.hessian import damped, prepare
from apt.pruning.mrp import refit_cg, refit_exact
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = True
#: what each layer reconstructs by default in a sequential run (apt.engine.sequential)
RECONSTRUCT = "layer"
#: the damping where the calibration size is unknown, and its upper bound
DEFAULT_PERCDAMP = 0.2
DAMP_PER_INPUT_TOKEN = 3.0
DAMP_MIN = 0.05


def damping_for(n_inputs: int, tokens: int) -> float:
    """APT's damping for a layer of ``n_inputs`` inputs whose Hessian came from ``tokens``
    calibration tokens: ``3 n / T`` within ``[0.05, 0.2]``, the range measured. The noise it
    guards against shrinks as ``T / n`` grows; 0.2 holds up to ``T / n = 15`` (the default
    16 x 512 calibration tokens on SmolLM2)."""
    return min(DEFAULT_PERCDAMP, max(DAMP_MIN, DAMP_PER_INPUT_TOKEN * n_inputs / tokens))


def default_damping(n_inputs: int | None = None, tokens: int | None = None) -> float:
    """The damping APT uses when none is given: :func:`damping_for` where the layer's inputs
    and calibration tokens are known, else ``DEFAULT_PERCDAMP``."""
    if n_inputs and tokens:
        return damping_for(n_inputs, tokens)
    return DEFAULT_PERCDAMP


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 GEMMs run natively (faster than float32) on ``device``: CUDA devices
    that support bfloat16, CPUs with AVX512-BF16 or AMX. Elsewhere they are emulated and can be
    slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)
    return False


def gemm_dtype(name: str, compute: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype of the ADMM steps' GEMMs but the last (option ``admm_gemm_dtype``)."""
    if name == "auto":
        return torch.bfloat16 if native_bfloat16(device) else compute
    return compute if name == "same" else _DTYPES[name]


def _blockwise(W, hessian, pattern, sparsity, blocksize, percdamp, opts: AptOptions):
    """The block-wise search: (pruned weight, mask, dead, damped H, info)."""
    prep = prepare(hessian, percdamp, unit=opts.damp_unit)
    W = W.to(dtype=prep.hessian.dtype, copy=True)
    W[:, prep.dead] = 0.0
    if pattern.structured:
        mask = search_nm(W, prep.hinv_chol, pattern, blocksize)
    else:
        # the column loop works on the (inputs x outputs) layout, updated in place through a view
        Wt = W.t().contiguous().t()
        mask = search_unstructured(Wt, prep.hinv_chol, sparsity, blocksize)
        W = Wt.contiguous()
    return W, mask, prep.dead, prep.hessian, prep.info()


def _admm(W, hessian, pattern, sparsity, percdamp, opts: AptOptions):
    """The ADMM search: (pruned weight, mask, dead, damped H, info)."""
    H, dead = damped(hessian, percdamp, opts.damp_unit)
    cd = _DTYPES[opts.compute_dtype]
    W = W.to(dtype=cd, copy=True)
    any_dead = bool(dead.any())
    if any_dead:
        W[:, dead] = 0.0
    low = gemm_dtype(opts.admm_gemm_dtype, cd, W.device)
    stats: dict = {}
    W, mask = admm_search(W, H.to(cd), dead, pattern, sparsity, iters=opts.admm_iters,
                          ramp=opts.admm_ramp, rho=float(opts.admm_rho), gemm_dtype=low,
                          exact_steps=opts.admm_exact_steps, max_iters=opts.admm_max_iters,
                          stop_change=float(opts.admm_stop_change),
                          rho_growth=float(opts.admm_rho_growth),
                          check_every=opts.admm_check_every, stats=stats)
    if any_dead:   # more dead weights than the pattern prunes: prune() adds them to the mask
        W[:, dead] = 0.0
    info = {"percdamp_used": percdamp, "damp_unit": opts.damp_unit, "cholesky_retries": [],
            "dead_inputs": int(dead.sum()), "admm_iters": opts.admm_iters,
            "admm_ramp": opts.admm_ramp, "admm_rho": float(opts.admm_rho),
            "admm_gemm_dtype": str(low).removeprefix("torch."),
            "admm_steps_run": stats["steps"], "admm_rho_final": stats["rho_final"]}
    return W, mask, dead, H, info


def prune(weight: torch.Tensor, hessian: torch.Tensor, pattern: Pattern, sparsity: float,
          blocksize: int = 128, percdamp: float | None = None, **options):
    """Prune ``weight`` (out x in) to ``pattern`` / ``sparsity`` from the layer's Hessian.

    ``percdamp``: the damping in units of ``damp_unit`` (None: :func:`default_damping`);
    ``blocksize``: columns per block of the block-wise search; ``options``: the fields of
    :class:`AptOptions` (an unknown name or a bad value raises ``ValueError`` naming what is
    accepted). Returns ``(pruned weight in the compute dtype, mask (True = pruned), info)``;
    the pruned weights are exactly zero and dead inputs (``diag H == 0``) are always pruned.
    """
    opts = AptOptions.from_mapping(options).resolved().for_pattern(pattern.structured, sparsity)
    if percdamp is None:
        percdamp = default_damping()
    hessian = hessian.to(weight.device)
    if opts.search == "admm":
        W, mask, dead, H, info = _admm(weight, hessian, pattern, sparsity, percdamp, opts)
    else:
        W, mask, dead, H, info = _blockwise(weight, hessian, pattern, sparsity, blocksize,
                                            percdamp, opts)
    info["search"] = opts.search
    mask |= dead.unsqueeze(0)
    if opts.refit:
        # the exact refit in the Hessian's compute dtype, CG in compute_dtype (no round trips:
        # every m x n conversion is a pass over the matrix)
        dt = H.dtype if opts.refit == "exact" else _DTYPES[opts.compute_dtype]
        W0 = weight.to(dtype=dt, copy=True)
        W0[:, dead] = 0.0
        if opts.refit == "exact":
            W = refit_exact(W0, H, mask)
        else:
            Hc = H.to(dt)
            hinv = None
            if opts.refit_precond == "hinv":
                hinv = torch.cholesky_inverse(torch.linalg.cholesky(Hc))
            W = refit_cg(W0, Hc, mask, W.to(dt), iters=int(opts.refit_iters), hinv=hinv)
    if opts.search != "admm" or opts.refit:     # the ADMM search returns W zero on its mask
        W = W.masked_fill(mask, 0.0)
    info.update({"refit": opts.refit, "refit_iters": opts.refit_iters})
    return W, mask, info
