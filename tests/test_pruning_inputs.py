"""Bad input to ``prune_matrix``: a ValueError that says what was wrong and what is accepted."""

from __future__ import annotations

import pytest
import torch

from apt.pruning import METHODS, prune_matrix
from apt.pruning.patterns import Pattern, parse_pattern, resolve

ALL = list(METHODS)


def problem(m=4, n=16):
    w = torch.randn(m, n)
    x = torch.randn(n, 64)
    return w, 2 / 64 * x @ x.T


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("sparsity", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "half"])
def test_sparsity_outside_open_unit_interval(method, sparsity):
    w, h = problem()
    with pytest.raises(ValueError, match=r"sparsity.*\(0, 1\)") as exc:
        prune_matrix(w, h, method, sparsity=sparsity)
    assert repr(sparsity)[:4] in str(exc.value)          # names the value it got


def test_unstructured_needs_a_sparsity():
    w, h = problem()
    with pytest.raises(ValueError, match=r"unstructured.*\(0, 1\)"):
        prune_matrix(w, h, "magnitude", sparsity=None)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("pattern", ["3:2", "0:4", "4:4", "a:b", "2:4:8", "2-4", "", "2:"])
def test_malformed_or_impossible_nm(method, pattern):
    w, h = problem()
    with pytest.raises(ValueError) as exc:
        prune_matrix(w, h, method, sparsity=None, pattern=pattern)
    msg = str(exc.value)
    assert repr(pattern) in msg                          # what was wrong
    assert "N:M" in msg and "'2:4'" in msg               # what is accepted


def test_pattern_must_be_a_string():
    with pytest.raises(ValueError, match="'unstructured' or 'N:M'"):
        parse_pattern(24)


@pytest.mark.parametrize("method", ALL)
def test_inputs_not_a_multiple_of_m(method):
    w, h = problem(4, 12)
    with pytest.raises(ValueError, match=r"inputs \(12\).*multiple of 8"):
        prune_matrix(w, h, method, sparsity=None, pattern="4:8")


def test_nm_sparsity_must_agree_if_given():
    w, h = problem()
    with pytest.raises(ValueError, match=r"2:4 implies sparsity 0.5; got sparsity 0.7"):
        prune_matrix(w, h, "magnitude", sparsity=0.7, pattern="2:4")
    assert resolve(0.5, "2:4") == (Pattern(2, 4), 0.5)
    assert resolve(None, " 4 : 8 ") == (Pattern(4, 8), 0.5)


@pytest.mark.parametrize("method", [m for m in ALL if m != "magnitude"])
@pytest.mark.parametrize("shape", [(15, 15), (16, 15), (16,), (4, 16)])
def test_hessian_of_the_wrong_shape(method, shape):
    w, _ = problem()
    with pytest.raises(ValueError, match=r"hessian must be \(16 x 16\).*got") as exc:
        prune_matrix(w, torch.ones(shape), method, sparsity=0.5)
    assert str(tuple(shape)) in str(exc.value)


@pytest.mark.parametrize("method", [m for m in ALL if m != "magnitude"])
def test_missing_hessian(method):
    w, _ = problem()
    with pytest.raises(ValueError, match="needs the Hessian"):
        prune_matrix(w, None, method, sparsity=0.5)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["weight", "hessian"])
def test_nan_or_inf(method, bad, where):
    w, h = problem()
    if where == "weight":
        w[1, 3] = bad
    else:
        h[2, 5] = bad
    if where == "hessian" and method == "magnitude":
        return          # magnitude does not read the Hessian; its validity is not its concern
    with pytest.raises(ValueError, match=f"{where} contains NaN or Inf.*finite"):
        prune_matrix(w, h, method, sparsity=0.5)


@pytest.mark.parametrize("method", ALL)
def test_weight_must_be_a_matrix(method):
    with pytest.raises(ValueError, match=r"2-D tensor \(out x in\)"):
        prune_matrix(torch.randn(16), torch.eye(16), method, sparsity=0.5)


def test_unknown_method_lists_the_known_ones():
    w, h = problem()
    with pytest.raises(ValueError, match="unknown method 'obs'; known: magnitude, wanda"):
        prune_matrix(w, h, "obs", sparsity=0.5)


@pytest.mark.parametrize("kwargs,match", [({"blocksize": 0}, "blocksize must be a positive"),
                                          ({"percdamp": -0.1}, "percdamp must be >= 0"),
                                          ({"tokens": 0}, "tokens must be a positive integer"),
                                          ({"tokens": 8.5}, "tokens must be a positive integer")])
def test_bad_solver_settings(kwargs, match):
    w, h = problem()
    with pytest.raises(ValueError, match=match):
        prune_matrix(w, h, "sparsegpt", sparsity=0.5, **kwargs)


# ------------------------------------------------------------------ one spelling of a target
@pytest.mark.parametrize("spec,label,token", [
    (0.5, "50%", "u50"), ("0.5", "50%", "u50"), ("50%", "50%", "u50"), ("u50", "50%", "u50"),
    (0.625, "62.5%", "u62.5"), ("62.5%", "62.5%", "u62.5"), ("u62.5", "62.5%", "u62.5"),
    ("2:4", "2:4", "2of4"), ("2of4", "2:4", "2of4"), (" 4:8 ", "4:8", "4of8"),
])
def test_target_spellings_round_trip(spec, label, token):
    from apt.pruning import parse_target
    t = parse_target(spec)
    assert (t.label, t.token) == (label, token)
    assert parse_target(t.token) == t and parse_target(t.label) == t


@pytest.mark.parametrize("spec", ["50", 1.0, 0, "abc", "4:2", "u", True, "150%"])
def test_target_refuses_bad_spellings(spec):
    from apt.pruning import parse_target
    with pytest.raises(ValueError):
        parse_target(spec)
