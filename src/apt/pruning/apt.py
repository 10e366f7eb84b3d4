"""APT: optimal multiple removal (MRP, Zhao et al. 2024): a mask search, then the MRP optimum.

For a given mask the best weights are known in closed form: removing the set Q of a row jointly,
``dw* = - w_Q S^-1 Hinv[Q, :]`` with ``S = Hinv[Q, Q]``, which is the least-squares refit of
the kept weights (``shared/method.md``). Everything else is the choice of the mask, made by one
of two searches (option ``search``):

* ``"admm"`` (the default; :mod:`apt.pruning.admm`): ADMM on ``1/2 (w - w0) H (w - w0)^T`` with
  the pattern's zeros, the pruned fraction rising along a cubic ramp (Boza 2024). At every step
  the whole matrix's mask is chosen again from weights that already carry the joint update of
  everything pruned so far, so weights that interact are judged together and an early choice can
  be undone; its fixed point is the MRP optimum for the mask it settles on (tested), and after
  10 steps at rho 1.5 it is close enough that a refit on the final mask (``refit="cg"``,
  ``refit_iters`` steps, or ``"exact"``) no longer pays end to end: an option, off by default.
  N:M: the N smallest of every group, exactly, at the end.
* ``"blockwise"``: the MRP update in SparseGPT's left-to-right frame, with N:M chosen by the
  joint loss over every pattern of each group (items 1-4 of the method, below).

Defaults, chosen by measurement (``DEFAULTS``; ``SEARCH_DEFAULTS`` fills ``damp_unit``,
``refit`` and ``refit_iters`` per search; ``DEFAULT_PERCDAMP`` 0.2: the ADMM search damps each
input by 0.2 x its own ``H[j, j]``, ``damp_unit="diag"``, or by :func:`damping_for` of the layer's
inputs and calibration tokens where these are known, as in the engine: 0.2 up to 15 tokens per
input, less beyond, see the damping paragraph below). Relative layer error
tr(dW H dW^T)/tr(W H W^T), total over the 35 linear layers of SmolLM2 blocks 0, 7, 15, 23 and 29,
APT / our SparseGPT, on the 16 x 512 calibration tokens of the C4 sample the Hessians came from
(in-sample) and on 32 other windows of it (held-out); time summed over the layers, 1 thread,
idle machine (``.venv/bin/python benchmarks/apt_variants.py --threads 1 --layers 'layers\\.'
--patterns 50%,60%,70%,2:4,4:8 --heldout resources/bench/hessians_smollm2_heldout_s12345_n32.pt
--out results/benchmarks/apt_heldout.json --variants ...``; every layer and the command in that
file)::

    variant                          in-sample 50%  60%   70%   2:4   4:8   held-out 50%  60%   70%   2:4   4:8   time x SparseGPT
    default: ADMM 10 (ramp 8), rho 1.5,      0.682 0.690 0.701 0.753 0.754          0.836 0.836 0.836 0.857 0.859   1.3 1.3 1.3 1.4 1.4
      GEMMs of steps 1-9 in bfloat16
    the same, all GEMMs in float32           0.682 0.690 0.701 0.753 0.754          0.837 0.836 0.836 0.857 0.859   1.7 1.8 1.8 1.8 1.8
    the same, before the float masks         0.682 0.690 0.701 0.753 0.754          0.837 0.836 0.836 0.857 0.859   1.9 1.9 1.9 1.9 2.1
    the same and 2 CG steps of the refit     0.680 0.686 0.694 0.748 0.750          0.836 0.834 0.832 0.855 0.857   2.2 2.3 2.3 2.3 2.4
    refit, rho 1 (the default before)        0.706 0.718 0.732 0.789 0.793          0.857 0.860 0.863 0.881 0.884   2.2 2.3 2.3 2.3 2.4
    refit, rho 1.25                          0.663 0.669 0.678 0.728 0.728          0.834 0.833 0.834 0.849 0.852   2.2 2.3 2.2 2.3 2.4
    refit, rho 2                             0.696 0.708 0.719 0.783 0.787          0.838 0.837 0.837 0.865 0.870   2.2 2.3 2.2 2.3 2.4
    refit, rho 3                             0.708 0.722 0.736 0.820 0.824          0.837 0.837 0.840 0.877 0.881   2.2 2.3 2.2 2.3 2.4
    refit, ADMM 6 (ramp 5), rho 1.5          0.703 0.712 0.723 0.781 0.781          0.835 0.834 0.836 0.858 0.861   1.7 1.7 1.7 1.7 1.7
    block-wise, 0.1 x median, cg 5           0.804 0.816 0.828 0.787 0.790          0.922 0.930 0.932 0.909 0.911   1.8 1.8 1.8 1.7 2.3

(The first two rows are ``results/benchmarks/apt_heldout_gemm.json``, variants ``default`` and
``gemm_f32``; the others come from ``apt_heldout.json``, run before the loop kept its masks as
0 / 1 floats (same results, slower), where "refit" is 2 CG steps and the variants are named
``norefit`` for the third row and ``default`` for the refit at rho 1.5.) Every variant wins all
35 layers at every pattern, in-sample and held-out. rho (the ADMM
penalty, in the normalized units of :mod:`apt.pruning.admm`) matters most: 1.25 to 2 are alike
held-out, 1 is clearly worse (the 10 steps have not settled; rho 0.9 gave 0.885 held-out at
50 % and lost 2 layers to SparseGPT at 2:4, ``results/benchmarks/apt_heldout_rho0.9_scratch.json``,
its command inside), so the default takes 1.5, a step away from that edge rather than the
in-sample best (1.25). The table of the rho 1 default, with fewer steps, no refit and a damping
of 0.1 x diag, is ``results/benchmarks/apt_heldout_rho1.json``; for ADMM in Wanda's
coordinates (``sqrt(diag H)``, see :mod:`apt.pruning.admm`), the default for a few hours,
``results/benchmarks/apt_heldout_admm_sqrtdiag.json`` (held-out 0.862 / 0.860 / 0.857 / 0.891 /
0.896, one layer lost at 2:4 and 4:8). Scratch runs on the 14 layers of blocks 7 and 23 with
that scaling (script not kept): 20 and 40 ADMM steps fit the calibration tokens better but not
new ones; damping 0.05 / 0.1 / 0.2 x diag H gave held-out 0.847 / 0.835 / 0.821 at 50 %.

End to end the choice was made on perplexity (``benchmarks/e2e_gap.py``: 3 calibration draws of
16 x 512 tokens, 32 windows of 512 tokens; share of the SparseGPT-to-dense gap closed, mean over
draws, in %, wiki / C4 sample, 50 % / 2:4 / 4:8 / 70 %)::

    default (ADMM 10 steps, rho 1.5, no refit,   31/35  29/32  29/32  40/44   results/benchmarks/e2e_gap.json
      GEMMs of steps 1-9 in bfloat16)
    the same, all GEMMs in float32               32/34  29/33  28/32  42/45   results/benchmarks/e2e_gap_gemm_f32.json
    the same in float32 and 2 CG steps of refit  33/35  29/34  29/32  41/44   results/benchmarks/e2e_gap_rho1.5_cg2.json
    that with rho 1 (the default before)         31/34  24/29  25/30  35/39   results/benchmarks/e2e_gap_rho1.json
    rho 1.5, 6 steps (ramp 5), cg 2              31/34  29/33  29/31  38/41   results/benchmarks/e2e_gap_rho1.5_admm6.json
    rho 1, 20 steps (ramp 16), 70 % only           -      -      -    34/41   results/benchmarks/e2e_gap_70_admm20.json
    rho 1 in Wanda's coordinates                 29/32  24/26  26/27  32/36   results/benchmarks/e2e_gap_admm_sqrtdiag.json
    that, 5 steps and no refit                   27/30  16/22  24/25  21/24   results/benchmarks/e2e_gap_admm5_norefit.json
    block-wise (0.1 x median)                    17/19  17/17  16/16  17/23   results/benchmarks/e2e_gap_blockwise.json

The bfloat16 GEMMs change no layer error by more than 0.1 %, and end to end they differ from
float32 by what any perturbation of the masks does to this benchmark: at 70 %, over 5 draws
(seeds 0-4), float32 closes 44 / 45 %, the default 42 / 44 %, and bfloat16 with the last 3
steps in float32 (more float32, ``admm_exact_steps=3``) 42 / 43 %
(``results/benchmarks/e2e_gap_70_5seeds_{f32,bf16,exact3}.json``); a single draw moves by up
to 6 points between these. ``admm_gemm_dtype="float32"`` (or ``"same"``) gives the float32
search back. Fewer steps cost little on held-out layers but lose end to end, at 70 % most, so the default
pays for the 10 steps; more steps do not help either. The refit, which paid at rho 1, is within
a point either way at rho 1.5 (the mean over the eight figures is 34.4 % without it, 34.7 % with
it, and one draw moves a figure by 5-10 points), and leaving it out saves three GEMMs in 13.

The damping follows the calibration size (:func:`damping_for`: ``3 n / T`` x diag H for n inputs
and T tokens, within [0.05, 0.2]). It is a ridge penalty against fitting what is particular to
the calibration tokens, so it should shrink as ``T / n`` grows, and it does: over the 35 SmolLM2
layers, scored on 32 windows the Hessians did not see, 0.2 / 0.1 / 0.05 x diag H leave
0.836 / 0.850 / 0.870 of SparseGPT's error at 50 % (0.857 / 0.864 / 0.881 at 2:4) with 16 x 512
calibration tokens (``T / n`` = 14 for the 576-input layers, 5 for ``down_proj``;
``results/benchmarks/apt_heldout_damping_admm.json``), but 0.807 / 0.794 / 0.790 (0.844 / 0.828
/ 0.822) with 64 x 512 (57 and 21; ``apt_heldout_damping_admm_32k.json``, Hessians of another
draw). ``3 n / T`` keeps 0.2 at the default 16 x 512 tokens (every result above unchanged) and
gives 0.053 / 0.14 at 64 x 512, about 0.05 for 4096 inputs at the protocol's 128 x 2048. End to
end at 64 x 512 (``benchmarks/e2e_gap.py --nsamples 64 --seeds 0,1 --patterns 0.5,2:4``, wiki
/ C4 sample, share of the SparseGPT-to-dense gap closed, mean of 2 draws): fixed 0.2 28 / 35 %
at 50 %, 24 / 30 % at 2:4 (``results/benchmarks/e2e_gap_n64_default.json``); ``3 n / T`` 31 / 39 %
and 28 / 36 % (``e2e_gap_n64.json``), better on all 8 draw x text x pattern pairs.

Time: ADMM is one GEMM (rows x n x n) per step, nine of ten in bfloat16 where that is native
(the CG refit, when asked for, 3 more in float32), plus two n x n inverses; SparseGPT is an n^3
factorization and a column loop. On this CPU APT takes about 1-1.4x our SparseGPT's time
summed over the SmolLM2 layers (2 threads; runs differ by ~10 %), and more on large matrices,
where the GEMMs and the passes over the matrix outweigh SparseGPT's work: about 2-2.5x on
4096 x 4096 and 3-4x on 11008 x 4096 (the figures of each run in
``results/benchmarks/solvers.json`` and ``apt_timing.json``, and in the README). On a GPU
(an H200) APT is the faster method, 0.2-0.6x our SparseGPT's time on every shape measured, the
SmolLM2 layers and 4096 x 4096, 11008 x 4096, 4096 x 11008 alike: there SparseGPT's column loop
is thousands of small kernels (``results/benchmarks/gpu/solvers_cuda.json``).
Everything else in the ADMM loop is passes over the matrix, kept few and cheap: masks are 0 / 1
floats (on CPU, comparisons that write bools and ``masked_fill`` are several times slower than
their float counterparts), counts use ``count_nonzero`` or float sums, N:M groups pairwise
ranks rather than ``topk`` (:mod:`apt.pruning.masks`).

The block-wise search: what ``shared/method.md`` asks of it, and where it lives:

1. Block-wise MRP. For each block g of B columns (earlier columns frozen), the block's mask is
   chosen, then every row removes its pruned set Q of g *jointly*:
   ``dw* = - w_Q S^-1 G[Q, :]`` with ``G = (H[U, U])^-1[g, g] = R[g, g]^T R[g, g]``
   (:func:`apt.pruning.mrp.mrp_update`, one masked batched Cholesky for all rows). The change
   of the columns after g follows from the in-block change alone: ``dw[U] = -z R[g, U]`` with
   ``z R[g, g] = -dw[g]`` (one triangular solve), so the lazy update is SparseGPT's.
2. N:M by the joint loss: in each group of M columns (earlier columns frozen), every row
   evaluates ``L*(Q) = 1/2 w_Q S^-1 w_Q^T`` for all C(M, N) patterns (``S^-1`` is shared by all
   rows: one small inverse per pattern and group), takes the smallest and applies its update.
3. Exact refit on the final mask, ``w_K = H[K, K]^-1 (H w)[K]`` with the damped H:
   ``refit="exact"`` (masked batched Cholesky, rows x n^3/3), ``refit="cg"`` (preconditioned CG
   from the pruned solution, ``refit_iters`` steps; never increases the error) or ``False``.
4. Unstructured mask rule inside a block: ``mask_rule`` = ``score`` (SparseGPT's),
   ``greedy`` (OBC's exact greedy per row), ``swap`` (1-swap refinement of the score mask,
   ``swap_iters`` rounds); see :mod:`apt.pruning.apt_masks`.

Unstructured counts are exact per matrix and equal to our SparseGPT's: block g prunes
``floor(s m e) - floor(s m j)`` weights (cumulative over the block ends), ``floor(s m n)`` in all.

Its settings, chosen by measurement when it was the default (0.1 x median of diag H, 5 CG steps:
pass ``percdamp=0.1`` with ``search="blockwise"``; SparseGPT keeps its reference 0.01 x
mean(diag H)). Relative layer error
tr(dW H dW^T)/tr(W H W^T), total over the 35 linear layers of SmolLM2 blocks 0, 7, 15, 23 and 29,
APT / our SparseGPT, on the calibration windows the Hessians came from (in-sample, 16 x 512
tokens of the C4 sample) and on 32 other windows of it (held-out), from
``.venv/bin/python benchmarks/apt_variants.py --heldout ...`` (the command, every layer and the
times are in ``results/benchmarks/apt_heldout_blockwise.json``; the mean-unit rows in
``results/benchmarks/apt_heldout_mean_unit.json``)::

    variant (damping, CG steps)       in-sample 50%  60%   70%   2:4   4:8    held-out 50%  60%   70%   2:4   4:8
    block-wise: 0.1 x median, cg 5               0.804 0.816 0.828 0.787 0.790           0.922 0.930 0.932 0.909 0.911
    0.2 x median, cg 5                        0.834 0.843 0.851 0.808 0.813           0.909 0.916 0.921 0.890 0.891
    0.1 x median, cg 3                        0.861 0.865 0.868 0.838 0.838           0.937 0.942 0.942 0.922 0.923
    0.1 x median, no refit                    1.049 1.052 1.054 0.994 0.986           1.005 1.012 1.015 0.976 0.972
    0.02 x mean, cg 5 (previous default)      0.843 0.852 0.860 0.809 0.815           0.944 0.948 0.951 0.916 0.920
    0.02 x mean, cg 10                        0.806 0.824 0.841 0.778 0.785           0.932 0.939 0.944 0.906 0.911
    0.01 x mean, cg 10 (first default)        0.773 0.794 0.814 0.756 0.761           0.942 0.948 0.949 0.926 0.930
    0.1 x mean, cg 5                          1.023 1.021 1.016 0.936 0.950           0.995 0.999 1.004 0.931 0.936
    SparseGPT itself with 0.02 x mean         1.029 1.026 1.019   -     -             0.992 0.992 0.992   -     -

0.1 x median with 5 CG steps wins every layer, in-sample and held-out, at every pattern.

* The refit is where the gain is, and it over-fits: on 16 x 512 calibration tokens the exact
  optimum for the mask fits those tokens far better (in-sample 0.77 with SparseGPT's damping)
  than new ones (0.94). The damping is a ridge penalty on the change of the weights, and its
  unit matters: a damping of 0.1 x mean(diag H), chosen first on blocks 7 and 23 alone
  (``results/benchmarks/apt_heldout_blocks7_23_v1.json``), is worse than SparseGPT, in- and
  out-of-sample, on the attention layers of block 0 and the down_proj of block 29: the layers
  whose Hessian diagonals are the most skewed (mean / median of diag H 6-9 and 21, 1.1-4.8
  elsewhere), where the mean makes the penalty large for most inputs. With the median as the
  unit (``damp_unit="median"``) the penalty follows the typical input instead. Among 0.05, 0.1,
  0.2 and 0.4 x median (``benchmarks/apt_damping_unit.py``,
  ``results/benchmarks/apt_damping_unit.json``, 50 % and 2:4), 0.1 is the largest that wins
  every layer held-out; 0.2 and 0.4 lower the held-out total further (0.909 / 0.912 at 50 %)
  but lose 3 of the 35 layers to SparseGPT. Tuned on the C4 sample (a held-out draw of it),
  never on a test text.
* The damping does not need to follow the calibration size, at least from 8k to 32k tokens:
  with Hessians of 16 x 512, 32 x 512 and 64 x 512 tokens (each scored on another draw,
  ``results/benchmarks/apt_damping_tokens_{8k,16k,32k}.json``, ``benchmarks/apt_damping_unit.py
  --medians ... --hessians A --heldout B``), the best of 0.0125-0.4 x median is 0.2 / 0.1 / 0.1
  at 50 % and 0.4 / 0.2 / 0.1 at 2:4, and 0.1 is within 0.01 of the best held-out total at each
  size. APT's held-out lead grows with the data: 0.914 / 0.898 / 0.889 of SparseGPT's error at
  50 % and 0.900 / 0.879 / 0.872 at 2:4 (scored on 32k, 32k and 16k tokens respectively).
* End to end (``benchmarks/e2e_gap.py``: 3 calibration draws of 16 x 512 tokens, perplexity on
  32 windows of 512 tokens), the share of the SparseGPT-to-dense perplexity gap APT closes,
  mean over draws, wiki / C4 sample: 0.1 x median 17 / 19 % (50 %), 17 / 17 % (2:4), 16 / 16 %
  (4:8), 17 / 23 % (70 %) (``results/benchmarks/e2e_gap_blockwise.json``); 0.02 x mean 12 / 18, 13 / 15,
  15 / 12, 15 / 22 % (``results/benchmarks/e2e_gap_mean_unit.json``).
* CG: with the median unit, 3 steps reach 0.937 held-out at 50 % where 5 reach 0.922, at about
  85 % of the time (table above). Preconditioners other than Jacobi (the diagonal
  blocks of H or of H^-1, or H^-1 itself) were tried in a scratch run and did not reach the same
  error in fewer steps. In float32 CG changes the error by < 0.2 % and halves the cost of float64.
* With the refit coming, the mask score should assume every column free: ``w^2 / diag(H^-1)``
  (``score="full"``) beats SparseGPT's ``w^2 / R_jj^2`` (0.729 vs 0.744 in-sample, block 23);
  without a refit it is worse than SparseGPT's, so it is only used with one.
* The joint update over the whole block (``joint_block=128``) gains a further ~1 % in-sample but
  its batched masked Cholesky costs 2-4x the whole SparseGPT run on CPU, so the default keeps
  SparseGPT's column loop inside blocks (``joint_block=1``) and lets the refit (the MRP optimum
  for the final set) do the joint update (``results/benchmarks/apt_variants.json``).
* Greedy (OBC) and swap masks lower the in-sample error a further ~5 % (k_proj, 50 %: 0.776 /
  0.774 vs 0.813 for the score mask, all with the refit;
  ``results/benchmarks/apt_mask_rules_kproj.json``) but cost 35x / 110x SparseGPT: available as
  ``mask_rule``, not the default.
* N:M: the exhaustive joint choice alone gains 0.4-1.2 % in-sample; with the refit 20 %.
  Choosing the pattern with every column free (``nm_loss="full"``) is no better (0.719 vs 0.720).
* Time: the refit is ``refit_iters + 1`` float32 GEMMs of (rows x n x n). Per matrix on an
  idle CPU, 1 thread, min of 5 (``benchmarks/apt_timing.py --threads 1 --repeats 5 --variants
  ...``, ``results/benchmarks/apt_timing_blockwise.json``), APT / our SparseGPT at 50 % and 2:4:
  576 x 576 1.93x / 1.83x, 1536 x 576 2.51x / 2.65x, 576 x 1536 1.61x / 1.56x; without the
  refit 1.13x / 1.04x, 1.24x / 1.29x, 1.03x / 1.02x; with 3 CG steps 1.73x / 1.60x, 2.11x /
  2.26x, 1.41x / 1.39x. The 1.5x target is missed on CPU, and the GEMMs set the floor: one
  1536 x 576 x 576 float32 GEMM takes 11 ms here (92 GFLOP/s, MKL on this AMD CPU), our whole
  SparseGPT 73 ms, so six of them alone are 0.9x of SparseGPT. Where rows >> inputs the refit
  (rows x n^2) outweighs SparseGPT's factorization (n^3). (Block-wise not measured on CUDA.)
"""

from __future__ import annotations

import torch

from apt.pruning.admm import admm_search
from apt.pruning.apt_masks import greedy_mask, score_mask, swap_refine
from apt.pruning.hessian import damped, prepare
from apt.pruning.masks import prune_count
from apt.pruning.mrp import mrp_update, nm_patterns, pattern_operators, refit_cg, \
    refit_exact
from apt.pruning.patterns import Pattern

NEEDS_HESSIAN = True
#: damping of the search and the refit, in units of the search's ``damp_unit`` (``diag H``
#: itself for the ADMM search); see the module docstring
DEFAULT_PERCDAMP = 0.2
#: with the number of calibration tokens known, the damping follows it (:func:`damping_for`)
DAMP_PER_INPUT_TOKEN = 3.0
DAMP_MIN = 0.05


def damping_for(n_inputs: int, tokens: int) -> float:
    """APT's damping for a layer of ``n_inputs`` inputs whose Hessian came from ``tokens``
    calibration tokens: ``3 n / T``, within ``[0.05, 0.2]`` (the range measured).

    The damping is a ridge penalty against fitting the calibration tokens' noise, which shrinks
    as ``T / n`` grows. On SmolLM2 layers scored on new tokens, 0.2 x diag H is best (or tied)
    with 8k calibration tokens (``T / n`` = 14 and 5) and 0.05 with 32k (57 and 21). ``3 n / T``
    keeps 0.2 up to ``T / n`` = 15, so the default settings (16 x 512 tokens) are unchanged, and
    falls below it beyond; see the module docstring."""
    return min(DEFAULT_PERCDAMP, max(DAMP_MIN, DAMP_PER_INPUT_TOKEN * n_inputs / tokens))

DEFAULTS = {"search": "admm", "admm_iters": 10, "admm_ramp": 8, "admm_rho": 1.5,
            "admm_gemm_dtype": "auto", "admm_exact_steps": 1,
            "damp_unit": None, "mask_rule": "score", "score": "full", "joint_block": 1,
            "refit": None, "refit_iters": None, "refit_dtype": "float32", "swap_iters": 8,
            "greedy_counts": "score", "nm_loss": "trailing"}
SEARCHES = ("admm", "blockwise")
#: options left at None take the value each search was measured best with
SEARCH_DEFAULTS = {"admm": {"damp_unit": "diag", "refit": False, "refit_iters": 2},
                   "blockwise": {"damp_unit": "median", "refit": "cg", "refit_iters": 5}}
MASK_RULES = ("score", "greedy", "swap")
SCORES = ("full", "sparsegpt", "block")
NM_LOSSES = ("trailing", "full")
REFITS = ("exact", "cg", False)


def _tri_right(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Z with Z A = B for upper-triangular A."""
    return torch.linalg.solve_triangular(A, B, upper=True, left=False)


def _joint_update(W, R, j, e, m1, b):
    """Remove each row's set ``m1`` from columns [j, e) of ``W`` in place, jointly within every
    sub-block of ``b`` columns (b >= e - j: the whole block at once, the exact MRP update for the
    block; b = 1: SparseGPT's column-by-column update), then the lazy update of columns >= e."""
    W1 = W[:, j:e]
    if b >= e - j:
        A = R[j:e, j:e]
        dw, _ = mrp_update(W1, A.T @ A, m1)
        W[:, j:e] = (W1 + dw).masked_fill(m1, 0.0)
        if e < W.shape[1]:
            W[:, e:] -= _tri_right(A, -dw) @ R[j:e, e:]
        return
    if b == 1:          # SparseGPT's loop, on the transpose so that each column is contiguous
        W1T = W1.t()
        in_place = W1T.is_contiguous()       # W is a view of its (inputs x outputs) transpose
        if not in_place:
            W1T = W1T.contiguous()
        mT = m1.t()
        A = R[j:e, j:e]
        d = torch.diagonal(A)
        Z1T = torch.empty_like(W1T)
        zero = torch.zeros((), dtype=W.dtype, device=W.device)
        for i in range(e - j):
            z = torch.where(mT[i], W1T[i], zero) / d[i]
            W1T[i:].addr_(A[i, i:], z, alpha=-1.0)
            W1T[i].masked_fill_(mT[i], 0.0)
            Z1T[i] = z
        if not in_place:
            W[:, j:e] = W1T.t()
        if e < W.shape[1]:
            W[:, e:].t().addmm_(R[j:e, e:].t(), Z1T, alpha=-1.0)
        return
    W1 = W1.clone()
    Z1 = torch.zeros_like(W1)
    for c in range(0, e - j, b):
        c2 = min(c + b, e - j)
        A = R[j + c:j + c2, j + c:j + c2]
        dw, _ = mrp_update(W1[:, c:c2], A.T @ A, m1[:, c:c2])
        z = _tri_right(A, -dw)
        W1[:, c:c2] = (W1[:, c:c2] + dw).masked_fill(m1[:, c:c2], 0.0)
        if c2 < e - j:
            W1[:, c2:] -= z @ R[j + c:j + c2, j + c2:e]
        Z1[:, c:c2] = z
    W[:, j:e] = W1
    if e < W.shape[1]:
        W[:, e:] -= Z1 @ R[j:e, e:]


def _unstructured(W, R, sparsity, B, opts):
    m, n = W.shape
    mask = torch.zeros_like(W, dtype=torch.bool)
    full_diag = R.pow(2).sum(0)          # diag(H^-1): single-removal loss with every column free
    done = 0
    for j in range(0, n, B):
        e = min(j + B, n)
        count = prune_count(sparsity, m * e) - done
        done += count
        A = R[j:e, j:e]
        G = A.T @ A
        W1 = W[:, j:e]
        rule = opts["mask_rule"]
        if opts["score"] == "sparsegpt":
            denom = None
        elif opts["score"] == "block":
            denom = torch.diagonal(G)
        elif opts["score"] == "full":
            denom = full_diag[j:e]
        else:
            raise ValueError(f"score must be 'sparsegpt', 'block' or 'full'; got {opts['score']!r}")
        if rule == "score":
            m1 = score_mask(W1, A, G, count, denom)
        elif rule == "greedy":
            m1 = greedy_mask(W1, A, G, count, counts=opts["greedy_counts"], denom=denom)
        elif rule == "swap":
            m1 = swap_refine(W1, G, score_mask(W1, A, G, count, denom), opts["swap_iters"])
        else:
            raise ValueError(f"mask_rule must be one of {MASK_RULES}; got {rule!r}")
        _joint_update(W, R, j, e, m1, int(opts["joint_block"]))
        mask[:, j:e] = m1
    return mask


def _nm(W, R, pattern: Pattern, B, choice_loss="trailing"):
    m, n = W.shape
    M, N = pattern.m, pattern.n
    B = max(M, (B // M) * M)
    pats = nm_patterns(N, M, device=W.device)
    P = len(pats)
    idx = torch.arange(n, device=W.device).reshape(n // M, M)
    Rd = R[idx.unsqueeze(2), idx.unsqueeze(1)]              # diagonal M x M blocks of R
    Sinv, T = pattern_operators(Rd.transpose(1, 2) @ Rd, pats)
    if choice_loss == "full":      # choose with every column free (what the refit will see)
        Rc = R[:, idx].permute(1, 0, 2)                       # (groups, n, M)
        Sc, _ = pattern_operators(Rc.transpose(1, 2) @ Rc, pats)
    elif choice_loss == "trailing":
        Sc = Sinv
    else:
        raise ValueError(f"nm_loss must be 'trailing' or 'full'; got {choice_loss!r}")
    # Every pattern's loss is a quadratic form and its update a linear map of the group's
    # weights: L_p = (w x w) . K_p and dw_p = -w F_p, so one matmul each serves all rows.
    G_ = idx.shape[0]
    K = torch.zeros(G_, P, M, M, dtype=W.dtype, device=W.device)
    pidx = torch.arange(P, device=W.device)
    K[:, pidx.unsqueeze(1).unsqueeze(2), pats.unsqueeze(2), pats.unsqueeze(1)] = 0.5 * Sc
    K = K.reshape(G_, P, M * M).transpose(1, 2)                # (groups, M*M, P)
    F = torch.zeros(G_, P, M, M, dtype=W.dtype, device=W.device)
    F[:, pidx.unsqueeze(1), pats] = T                # F_p[Q_i, :] = T_p[i, :]
    F = F.permute(0, 2, 1, 3).reshape(G_, M, P * M)            # (groups, M, P*M)
    Rdinv = torch.linalg.inv(Rd)
    pm = torch.zeros(P, M, dtype=torch.bool, device=W.device)
    pm.scatter_(1, pats, True)
    Kt = K.transpose(1, 2).contiguous()                       # (groups, P, M*M)
    Ft = F.transpose(1, 2).contiguous()                       # (groups, P*M, M)
    RdinvT = Rdinv.transpose(1, 2).contiguous()
    # the loop runs on a transposed copy (inputs x outputs): a group's weights are contiguous
    WT = W.t().contiguous()
    maskT = torch.zeros(n, m, dtype=torch.bool, device=W.device)
    for j in range(0, n, B):
        e = min(j + B, n)
        W1 = WT[j:e]                                          # view, updated in place
        Z1 = torch.empty_like(W1)
        for c in range(0, e - j, M):
            t = (j + c) // M
            w = W1[c:c + M]                                   # (M, rows)
            quad = (w.unsqueeze(1) * w.unsqueeze(0)).reshape(M * M, m)
            choice = (Kt[t] @ quad).argmin(0)                 # (rows,)
            allu = (Ft[t] @ w).view(P, M, m)
            dw = -allu.gather(0, choice.view(1, 1, m).expand(1, M, m)).squeeze(0)
            gm = pm[choice].t()
            w.add_(dw).masked_fill_(gm, 0.0)
            z = -(RdinvT[t] @ dw)                             # z R[g, g] = -dw, transposed
            if c + M < e - j:
                W1[c + M:].addmm_(R[j + c:j + c + M, j + c + M:e].t(), z, alpha=-1.0)
            Z1[c:c + M] = z
            maskT[j + c:j + c + M] = gm
        if e < n:
            WT[e:].addmm_(R[j:e, e:].t(), Z1, alpha=-1.0)
    W.copy_(WT.t())
    return maskT.t()


def _dtype(name: str) -> torch.dtype:
    dt = {"float32": torch.float32, "float64": torch.float64}.get(name)
    if dt is None:
        raise ValueError(f"refit_dtype must be 'float32' or 'float64'; got {name!r}")
    return dt


def _gemm_dtype(name: str, compute: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype of the ADMM steps' GEMMs but the last (option ``admm_gemm_dtype``)."""
    if name == "auto":
        return torch.bfloat16 if native_bfloat16(device) else compute
    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
          "same": compute}.get(name)
    if dt is None:
        raise ValueError("admm_gemm_dtype must be 'auto', 'bfloat16', 'float32', 'float64' or "
                         f"'same' (the compute dtype); got {name!r}")
    return dt


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


def _blockwise(W, hessian, pattern, sparsity, blocksize, percdamp, unit, opts):
    """The MRP search in SparseGPT's frame: (pruned weight, mask, dead, damped H, info)."""
    prep = prepare(hessian, percdamp, unit=unit)
    W = W.to(dtype=prep.hessian.dtype, copy=True)
    W[:, prep.dead] = 0.0
    R = prep.hinv_chol
    if pattern.structured:
        mask = _nm(W, R, pattern, blocksize, opts["nm_loss"])
    else:
        # the column loop works on the (inputs x outputs) layout, updated in place through a view
        Wt = W.t().contiguous().t()
        mask = _unstructured(Wt, R, sparsity, blocksize, opts)
        W = Wt.contiguous()
    info = prep.info()
    if not pattern.structured:
        info["mask_rule"] = opts["mask_rule"]
    return W, mask, prep.dead, prep.hessian, info


def _admm(W, hessian, pattern, sparsity, percdamp, unit, opts):
    """The ADMM search (:mod:`apt.pruning.admm`): (pruned weight, mask, dead, damped H, info)."""
    H, dead = damped(hessian, percdamp, unit)
    cd = _dtype(opts["refit_dtype"])
    W = W.to(dtype=cd, copy=True)
    any_dead = bool(dead.any())
    if any_dead:
        W[:, dead] = 0.0
    gemm_dtype = _gemm_dtype(opts["admm_gemm_dtype"], cd, W.device)
    W, mask = admm_search(W, H.to(cd), dead, pattern, sparsity, iters=opts["admm_iters"],
                          ramp=opts["admm_ramp"], rho=float(opts["admm_rho"]),
                          gemm_dtype=gemm_dtype, exact_steps=opts["admm_exact_steps"])
    if any_dead:   # more dead weights than the pattern prunes: prune() adds them to the mask
        W[:, dead] = 0.0
    info = {"percdamp_used": percdamp, "damp_unit": unit, "cholesky_retries": [],
            "dead_inputs": int(dead.sum()), "admm_iters": opts["admm_iters"],
            "admm_ramp": opts["admm_ramp"], "admm_rho": float(opts["admm_rho"]),
            "admm_gemm_dtype": str(gemm_dtype).removeprefix("torch.")}
    return W, mask, dead, H, info


def prune(weight: torch.Tensor, hessian: torch.Tensor, pattern: Pattern, sparsity: float,
          blocksize: int = 128, percdamp: float = 0.01, **options):
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown APT option(s) {sorted(unknown)}; accepted: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    search = opts["search"]
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}; got {search!r}")
    for key, value in SEARCH_DEFAULTS[search].items():
        if opts[key] is None:
            opts[key] = value
    if opts["refit"] not in REFITS:
        raise ValueError(f"refit must be one of {REFITS}; got {opts['refit']!r}")
    for key, accepted in (("mask_rule", MASK_RULES), ("score", SCORES), ("nm_loss", NM_LOSSES)):
        if opts[key] not in accepted:      # checked whatever the search, so a typo never hides
            raise ValueError(f"{key} must be one of {accepted}; got {opts[key]!r}")
    unit = opts["damp_unit"]
    hessian = hessian.to(weight.device)
    if search == "admm":
        W, mask, dead, H, info = _admm(weight, hessian, pattern, sparsity, percdamp, unit, opts)
    else:
        W, mask, dead, H, info = _blockwise(weight, hessian, pattern, sparsity, blocksize,
                                            percdamp, unit, opts)
    info["search"] = search
    mask |= dead.unsqueeze(0)
    if opts["refit"]:
        # the exact refit in the Hessian's compute dtype, CG in refit_dtype (no round trips:
        # every m x n conversion is a pass over the matrix)
        dt = H.dtype if opts["refit"] == "exact" else _dtype(opts["refit_dtype"])
        W0 = weight.to(dtype=dt, copy=True)
        W0[:, dead] = 0.0
        if opts["refit"] == "exact":
            W = refit_exact(W0, H, mask)
        else:
            W = refit_cg(W0, H.to(dt), mask, W.to(dt), iters=int(opts["refit_iters"]))
    if search != "admm" or opts["refit"]:     # the ADMM search returns W zero on its mask
        W = W.masked_fill(mask, 0.0)
    info.update({k: opts[k] for k in ("refit", "refit_iters")})
    return W, mask, info
