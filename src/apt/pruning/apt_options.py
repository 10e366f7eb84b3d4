"""APT's options: one frozen, validated object, with every default in one place.

``prune_matrix(w, h, method="apt", **options)``, ``apt prune --option KEY=VALUE`` and the
pipeline's ``method_args`` all end in :meth:`AptOptions.from_mapping`, which refuses an unknown
key or a bad value with the field's name and what it accepts. Options left at ``None`` take the
value their search was measured best with (:meth:`AptOptions.resolved`). Why each default is
what it is: ``docs/decisions.md``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


def _opt(default, help: str, minimum=None):
    return field(default=default, metadata={"help": help, "minimum": minimum})


@dataclass(frozen=True)
class AptOptions:
    """APT's settings beyond the pattern, the sparsity and the damping's value."""

    search: Literal["admm", "blockwise"] = _opt(
        "admm", "mask search: 'admm' over the whole matrix (default) or 'blockwise', the "
        "paper's MRP search in SparseGPT's left-to-right frame")
    admm_iters: int = _opt(10, "ADMM steps", minimum=1)
    admm_ramp: Optional[int] = _opt(
        None, "steps over which the pruned fraction rises to the target (1 <= admm_ramp <= "
        "admm_iters; None: 2 for N:M and for unstructured sparsity >= 0.7, else 8)", minimum=1)
    admm_rho: Optional[float] = _opt(
        None, "ADMM penalty, in the normalized units of the search (> 0; None: 1.25 for N:M, "
        "1.5 for unstructured)", minimum=0.0)
    admm_gemm_dtype: Literal["auto", "bfloat16", "float32", "float64", "same"] = _opt(
        "auto", "dtype of the GEMMs of the ADMM steps that only steer the mask: 'auto' is "
        "bfloat16 where it is native (CUDA, AVX512-BF16 / AMX CPUs), else the compute dtype")
    admm_exact_steps: int = _opt(1, "final ADMM steps whose GEMM runs in the compute dtype",
                                 minimum=0)
    admm_max_iters: Optional[int] = _opt(
        None, "ADMM steps at most: beyond admm_iters the search goes on until the mask is "
        "stable (admm_stop_change), raising rho by admm_rho_growth at each check while it is "
        "not (None: admm_iters, no stability check)", minimum=1)
    admm_stop_change: float = _opt(
        1e-3, "stability stop of the extended search: the fraction of the pruned count that "
        "may still change between checks", minimum=0.0)
    admm_rho_growth: float = _opt(
        1.0, "factor on rho at each check of the extended search while the mask changes "
        "(1: rho fixed)", minimum=0.0)
    admm_check_every: int = _opt(1, "steps between the extended search's checks", minimum=1)
    compute_dtype: Literal["float32", "float64"] = _opt(
        "float32", "dtype of the ADMM search and of the CG refit")
    damp_unit: Optional[Literal["diag", "mean", "median"]] = _opt(
        None, "what the damping multiplies: each input's own H[j, j] ('diag'), or the mean or "
        "median of diag H (None: 'diag' for admm, 'median' for blockwise)")
    refit: Optional[Literal["cg", "exact", False]] = _opt(
        None, "least-squares refit of the kept weights on the final mask: 'cg', 'exact' or "
        "false (None: false for admm, 'cg' for blockwise)")
    refit_precond: Literal["jacobi", "hinv"] = _opt(
        "jacobi", "preconditioner of the 'cg' refit: diag(H)^-1 ('jacobi') or H^-1 restricted "
        "to the kept weights ('hinv': one more GEMM and one inverse, fewer steps on "
        "correlated inputs)")
    refit_iters: Optional[int] = _opt(
        None, "conjugate-gradient steps of the 'cg' refit (None: 2 for admm, 5 for blockwise)",
        minimum=1)

    #: what the ``None`` fields become, per search (the settings each was measured best with)
    SEARCH_DEFAULTS: typing.ClassVar[dict] = {
        "admm": {"damp_unit": "diag", "refit": False, "refit_iters": 2},
        "blockwise": {"damp_unit": "median", "refit": "cg", "refit_iters": 5},
    }

    #: what ``admm_ramp`` / ``admm_rho`` become when left at None, per pattern family: N:M,
    #: unstructured from ``HIGH_SPARSITY`` up, and below it (:meth:`for_pattern`). The N:M and
    #: high-sparsity settings won on held-out layers and then end to end over three calibration
    #: draws against the one every family had before (docs/decisions.md)
    PATTERN_DEFAULTS: typing.ClassVar[dict] = {
        "nm": {"admm_ramp": 2, "admm_rho": 1.25},
        "high": {"admm_ramp": 2, "admm_rho": 1.5},
        "low": {"admm_ramp": 8, "admm_rho": 1.5},
    }
    #: the setting of every family before (config/apt-previous.yaml reruns it beside today's)
    PREVIOUS_DEFAULTS: typing.ClassVar[dict] = {"admm_ramp": 8, "admm_rho": 1.5}
    HIGH_SPARSITY: typing.ClassVar[float] = 0.7

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        if self.admm_ramp is not None and self.admm_ramp > self.admm_iters:
            raise ValueError(f"APT option admm_ramp ({self.admm_ramp}) must be <= admm_iters "
                             f"({self.admm_iters})")

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> "AptOptions":
        """The options from ``{name: value}``; an unknown name is refused with the list."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown APT option(s) {unknown}; accepted: {cls.describe()}")
        return cls(**options)

    def resolved(self) -> "AptOptions":
        """A copy with every ``None`` field set to its search's default."""
        fill = {k: v for k, v in self.SEARCH_DEFAULTS[self.search].items()
                if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)

    def for_pattern(self, structured: bool, sparsity: float) -> "AptOptions":
        """A copy with ``admm_ramp`` and ``admm_rho`` set, where None, to the pattern family's
        defaults (the ramp at most ``admm_iters``)."""
        family = "nm" if structured else (
            "high" if sparsity >= self.HIGH_SPARSITY - 1e-9 else "low")
        fill = {k: v for k, v in self.PATTERN_DEFAULTS[family].items()
                if getattr(self, k) is None}
        if "admm_ramp" in fill:
            fill["admm_ramp"] = min(fill["admm_ramp"], self.admm_iters)
        return dataclasses.replace(self, **fill)

    @classmethod
    def describe(cls) -> str:
        """One line per option: name, accepted values, default, description."""
        hints = typing.get_type_hints(cls)
        return "; ".join(f"{f.name} ({_accepted(hints[f.name])}, default {f.default!r}): "
                         f"{f.metadata['help']}" for f in dataclasses.fields(cls))


def _accepted(hint) -> str:
    literals, kinds = _split_hint(hint)
    parts = [repr(v) for v in literals] + [k.__name__ for k in kinds]
    return " | ".join(parts)


def _split_hint(hint) -> tuple[list, list]:
    """The literal values and the plain types a field's annotation admits."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return list(typing.get_args(hint)), []
    if origin is Union:
        literals, kinds = [], []
        for arg in typing.get_args(hint):
            lit, kin = _split_hint(arg)
            literals += lit
            kinds += kin
        return literals, kinds
    if hint is type(None):
        return [None], []
    return [], [hint]


def _check_field(f, hint, value) -> None:
    literals, kinds = _split_hint(hint)
    ok = any(value is v if v is None or isinstance(v, bool) else
             (value == v and not isinstance(value, bool)) for v in literals)
    for kind in kinds:
        if kind is bool:
            ok = ok or isinstance(value, bool)
        elif kind is int:
            ok = ok or (isinstance(value, int) and not isinstance(value, bool))
        elif kind is float:
            ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
    minimum = f.metadata.get("minimum")
    if ok and minimum is not None and value is not None and not isinstance(value, str):
        ok = value > minimum if isinstance(minimum, float) else value >= minimum
    if not ok:
        bound = ""
        if minimum is not None:
            bound = f" {'>' if isinstance(minimum, float) else '>='} {minimum}"
        raise ValueError(f"APT option {f.name}={value!r}: expected {_accepted(hint)}{bound} "
                         f"({f.metadata['help']})")


#: the mask searches, in the order of the option's values
SEARCHES = tuple(AptOptions.SEARCH_DEFAULTS)
