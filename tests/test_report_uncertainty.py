"""apt report's standard errors: perplexity over windows, the gap closure's bootstrap over the
same windows, zero-shot SEs and APT-minus-other differences, and OWL variants kept apart."""

import csv
import io
import json
import math
import statistics

import numpy as np
import pytest
import torch

from apt.errors import AptError
from apt.eval.perplexity import perplexity
from apt.report import build_report, collect_records, gap_closure, load_records
from apt.report.plots import _series
from apt.report.uncertainty import (bootstrap_indices, closure_draws, closure_se, diff_se,
                                    log_ppl_se, mean_se, window_means)
from apt.report.zsdiff import zeroshot_diff_table
from test_report import _prune_report, _write

SEQLEN = 33   # 32 predicted tokens per window


def _ppl_windows(model, dataset, means):
    """An `apt eval ppl` file whose windows have the given mean NLLs per predicted token."""
    n, per = len(means), SEQLEN - 1
    return {"evaluation": "perplexity", "model": model, "dataset": dataset,
            "ppl": math.exp(sum(means) / n), "nll_mean": sum(means) / n, "windows": n,
            "tokens": n * per, "window_nll": [m * per for m in means],
            "settings": {"seqlen": SEQLEN, "max_windows": n}}


def _zs_se(model, accs):
    """An `apt eval zeroshot` file: {task: (acc, acc_stderr)}."""
    return {"evaluation": "zeroshot", "model": model, "settings": {"limit": 400},
            "tasks": {t: {"acc": a, "acc_stderr": se, "n": 400} for t, (a, se) in accs.items()}}


def _variant(root, folder, method, pattern, seed, files, allocation=None):
    """A pruned variant's folder with its prune report; returns (folder, checkpoint name)."""
    f = root / folder
    report = _prune_report("org/m", method, pattern, 0.5, seed)
    if allocation is not None:
        report["settings"]["allocation"] = allocation
        report["allocation"] = {"name": allocation, "blocks": []}
    files.append(_write(f / "prune.json", report))
    return f, f"ckpt/{folder}"


# ------------------------------------------------------------------ the arithmetic itself
def test_window_means_and_log_ppl_se_by_hand():
    means = window_means([3.0, 5.0, 10.0], tokens=6)        # 2 predicted tokens per window
    assert means == (1.5, 2.5, 5.0)
    assert log_ppl_se(means) == pytest.approx(statistics.stdev(means) / math.sqrt(3), rel=1e-12)
    assert log_ppl_se([2.0] * 5) == 0.0
    assert math.isnan(log_ppl_se([2.0]))                     # one window: no spread to measure
    with pytest.raises(ValueError):
        window_means([1.0, 2.0], tokens=5)                   # windows predict equally many


def test_window_means_agree_with_the_perplexity_the_evaluator_reports():
    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.table = torch.nn.Embedding(11, 11)

        def forward(self, input_ids, use_cache=False):
            return type("Out", (), {"logits": self.table(input_ids)})()

    stream = torch.randint(0, 11, (7 * 9 + 3,), generator=torch.Generator().manual_seed(1))
    res = perplexity(Bigram(), stream, seqlen=9, progress=False)
    means = window_means(res["window_nll"], res["tokens"])
    assert len(means) == res["windows"] == 7
    assert math.exp(sum(means) / 7) == pytest.approx(res["ppl"], rel=1e-12)


def test_closure_se_is_zero_for_identical_windows_and_grows_with_their_spread():
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(3, 32))
    dense, base, method = np.full(32, 3.0), np.full(32, 3.8), np.full(32, 3.5)
    assert closure_se(dense, base, method) == 0.0
    ses = [closure_se(dense + t * noise[0], base + t * noise[1], method + t * noise[2])
           for t in (0.02, 0.05, 0.1)]
    assert 0 < ses[0] < ses[1] < ses[2]
    # deterministic: the same resamples every call
    again = closure_se(dense + 0.1 * noise[0], base + 0.1 * noise[1], method + 0.1 * noise[2])
    assert again == ses[2]
    assert np.array_equal(bootstrap_indices(32), bootstrap_indices(32))
    assert math.isnan(closure_se(dense, base[:31], method))  # not the same windows


def test_closure_se_resamples_the_three_models_jointly():
    """Windows that vary a lot but move together (each model a constant shift of the dense
    NLLs) give the same closure in every resample; drawn independently they would not."""
    d = np.random.default_rng(2).normal(3.0, 0.5, size=40)
    assert closure_se(d, d + 0.3, d + 0.1) < 1e-9
    idx = bootstrap_indices(40)
    other = bootstrap_indices(40, seed=1)
    ppl = lambda x, i: np.exp(x[i].mean(axis=1))   # noqa: E731
    independent = (ppl(d + 0.3, idx) - ppl(d + 0.1, other)) / (ppl(d + 0.3, idx) - ppl(d, other))
    assert independent.std(ddof=1) > 0.05


def test_closure_se_equals_the_hand_computed_bootstrap_of_two_windows():
    dense, base, method = [1.0, 2.0], [2.0, 2.6], [1.5, 2.4]
    every = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])     # all resamples of two windows

    def closure(i, j):
        pd, pb, pm = (math.exp((x[i] + x[j]) / 2) for x in (dense, base, method))
        return (pb - pm) / (pb - pd)

    by_hand = [closure(i, j) for i, j in every]
    assert list(closure_draws(dense, base, method, every)) == pytest.approx(by_hand, rel=1e-12)
    assert closure_se(dense, base, method, indices=every) == pytest.approx(
        statistics.stdev(by_hand), rel=1e-12)
    # random resamples estimate the same spread: the four resamples are equally likely, so
    # 2000 draws give their population standard deviation within a few per cent
    ideal = statistics.pstdev(by_hand)
    assert closure_se(dense, base, method) == pytest.approx(ideal, rel=0.1)


def test_mean_and_difference_standard_errors():
    assert mean_se([0.03, 0.04]) == pytest.approx(0.025)        # sqrt(0.03^2 + 0.04^2) / 2
    assert mean_se([0.02] * 4) == pytest.approx(0.01)
    assert math.isnan(mean_se([0.02, None])) and math.isnan(mean_se([]))
    assert diff_se(0.03, 0.04) == pytest.approx(0.05)
    assert math.isnan(diff_se(0.03, None))


# ------------------------------------------------------------------ perplexity in the report
DENSE_W = [2.9, 3.1, 3.0, 3.4]
SGPT_W = {0: [3.6, 3.9, 3.7, 4.2], 1: [3.5, 4.0, 3.8, 4.1]}
APT_W = {0: [3.3, 3.5, 3.4, 3.9], 1: [3.4, 3.6, 3.3, 3.8]}


def _ppl_tree(root, seeds=(0,)):
    m = root / "metrics" / "m"
    files = [_write(m / "dense" / "ppl-wiki.json", _ppl_windows("org/m", "wiki", DENSE_W))]
    for s in seeds:
        for method, w in (("sparsegpt", SGPT_W), ("apt", APT_W)):
            f, ckpt = _variant(m, f"{method}-s{s}", method, "unstructured", s, files)
            files.append(_write(f / "ppl-wiki.json", _ppl_windows(ckpt, "wiki", w[s])))
    return files


def test_ppl_records_carry_the_windows_and_the_table_notes_the_se_range(tmp_path):
    files = _ppl_tree(tmp_path)
    recs = [r for r in collect_records(files) if r.kind == "ppl"]
    ses = {r.variant.method: r.se["wiki"] for r in recs}
    assert ses["dense"] == pytest.approx(statistics.stdev(DENSE_W) / 2, rel=1e-12)
    assert all(len(r.windows["wiki"]) == 4 for r in recs)
    build_report(files, tmp_path / "t", None, tmp_path / "metrics.json")
    md = (tmp_path / "t" / "ppl.md").read_text()
    lo, hi = min(ses.values()), max(ses.values())
    assert f"- standard error over windows: {100 * lo:.1f}-{100 * hi:.1f} % of each perplexity" in md
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["m"]["apt"]["50%"]["ppl_se"]["wiki"] == pytest.approx(ses["apt"])
    assert summary["m"]["dense"]["dense"]["ppl_se"]["wiki"] == pytest.approx(ses["dense"])


def test_old_ppl_files_without_windows_give_no_se_and_bad_ones_are_refused(tmp_path):
    old = _ppl_windows("org/m", "wiki", DENSE_W)
    del old["window_nll"]
    (rec,) = load_records(_write(tmp_path / "old.json", old))
    assert rec.se == {} and rec.windows == {}
    bad = _ppl_windows("org/m", "wiki", DENSE_W)
    bad["window_nll"] = bad["window_nll"][:3]
    with pytest.raises(AptError, match="one NLL sum per window"):
        load_records(_write(tmp_path / "bad.json", bad))


def test_gap_table_has_the_bootstrap_se_of_each_seed_and_is_deterministic(tmp_path):
    files = _ppl_tree(tmp_path, seeds=(0,))
    build_report(files, tmp_path / "t", None, tmp_path / "metrics.json")
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "gap.csv").read_text())))
    assert rows[0] == ["Model", "Pattern", "Seeds", "wiki", "wiki SE (windows)"]
    want = closure_se(DENSE_W, SGPT_W[0], APT_W[0])
    assert 0 < want and float(rows[1][4]) == pytest.approx(want, rel=1e-12)
    first = (tmp_path / "t" / "gap.md").read_bytes()
    build_report(files, tmp_path / "t", None, None)
    assert (tmp_path / "t" / "gap.md").read_bytes() == first
    assert "bootstrap standard error" in first.decode()
    g = json.loads((tmp_path / "metrics.json").read_text())["m"]["apt"]["50%"]["gap_closed"]["wiki"]
    assert g["se_windows"] == pytest.approx(want) and g["se_windows_per_seed"] == [pytest.approx(want)]


def test_gap_se_over_seeds_is_the_mean_of_the_per_seed_ses(tmp_path):
    files = _ppl_tree(tmp_path, seeds=(0, 1))
    (cell,) = gap_closure(collect_records(files))
    per_seed = [closure_se(DENSE_W, SGPT_W[s], APT_W[s]) for s in (0, 1)]
    assert cell.se.values == pytest.approx(tuple(per_seed), rel=1e-12)
    build_report(files, tmp_path / "t", None, tmp_path / "metrics.json")
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "gap.csv").read_text())))
    assert rows[0][-1] == "wiki SE (windows)" and rows[0][3] == "wiki mean"
    assert float(rows[1][-1]) == pytest.approx(sum(per_seed) / 2, rel=1e-12)
    assert "mean of the per-seed standard errors" in (tmp_path / "t" / "gap.md").read_text()


# ------------------------------------------------------------------ zero-shot
ZS = {"dense": {"arc_easy": (0.60, 0.024), "piqa": (0.70, 0.020)},
      ("apt", 1): {"arc_easy": (0.50, 0.025), "piqa": (0.69, 0.021)},
      ("apt", 2): {"arc_easy": (0.52, 0.025), "piqa": (0.68, 0.021)},
      ("sparsegpt", 0): {"arc_easy": (0.40, 0.025), "piqa": (0.60, 0.022)},
      ("sparsegpt", 2): {"arc_easy": (0.42, 0.025), "piqa": (0.675, 0.020)},
      ("wanda", 0): {"arc_easy": (0.30, 0.023), "piqa": (0.60, 0.022)}}


def _zs_tree(root, runs=ZS):
    m = root / "metrics" / "m"
    files = []
    for key, accs in runs.items():
        if key == "dense":
            files.append(_write(m / "dense" / "zeroshot.json", _zs_se("org/m", accs)))
            continue
        method, seed = key
        f, ckpt = _variant(m, f"{method}-s{seed}", method, "unstructured", seed, files)
        files.append(_write(f / "zeroshot.json", _zs_se(ckpt, accs)))
    return files


def test_zeroshot_table_gets_the_se_of_the_mean_over_tasks(tmp_path):
    build_report(_zs_tree(tmp_path), tmp_path / "t", tmp_path / "plots", tmp_path / "s.json")
    md = (tmp_path / "t" / "zeroshot.md").read_text().splitlines()
    assert md[0] == "| Model | Method | Pattern | ARC-e | PIQA | Mean | SE |"
    dense_se = math.sqrt(0.024 ** 2 + 0.020 ** 2) / 2
    assert md[2] == f"| m | Dense | dense | 60.00 | 70.00 | 65.00 | {100 * dense_se:.2f} |"
    assert "per-task standard error (lm-eval `acc_stderr`): 2.00-2.50 points" in "\n".join(md)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["m"]["dense"]["dense"]["acc_se"]["mean"] == pytest.approx(dense_se)
    assert summary["m"]["wanda"]["50%"]["acc_se"]["piqa"] == 0.022
    assert (tmp_path / "plots" / "m-acc.png").stat().st_size > 0


def test_zeroshot_diff_rows_values_markers_and_seeds(tmp_path):
    build_report(_zs_tree(tmp_path), tmp_path / "t", None, None)
    md = (tmp_path / "t" / "zeroshot-diff.md").read_text().splitlines()
    assert md[0] == ("| Model | Method | Pattern | Versus | Seed | Errors | ARC-e | PIQA | Mean |")
    # against the dense model: APT's lowest seed (1); against SparseGPT: the seed both have
    # (2); Wanda was pruned from seed 0 only, which APT lacks: no row
    rows = [line.split(" | ")[3:5] for line in md[2:] if line.startswith("| ")]
    assert rows == [["Dense", "1"], ["SparseGPT", "2"]]
    d_arc, se_arc = 0.50 - 0.60, math.hypot(0.025, 0.024)
    d_piqa, se_piqa = 0.69 - 0.70, math.hypot(0.021, 0.020)
    se_mean = math.hypot(math.hypot(0.025, 0.021) / 2, math.hypot(0.024, 0.020) / 2)
    d_mean = (0.50 + 0.69) / 2 - 0.65
    assert md[2] == (f"| m | APT | 50% | Dense | 1 | unpaired | {100 * d_arc:.2f} ± "
                     f"{100 * se_arc:.2f}* | "
                     f"{100 * d_piqa:.2f} ± {100 * se_piqa:.2f} | "
                     f"{100 * d_mean:.2f} ± {100 * se_mean:.2f}* |")
    # APT seed 2 against SparseGPT seed 2: arc_easy +10 points (2 SE = 7.07: marked), piqa
    # +0.5 (not)
    assert md[3].startswith("| m | APT | 50% | SparseGPT | 2 | unpaired | 10.00 ± 3.54* | "
                            "0.50 ± 2.90 |")
    assert md[3].split(" | ")[6].endswith("*") and not md[3].split(" | ")[7].endswith("*")
    assert "- *: difference larger than twice its standard error" in md
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "zeroshot-diff.csv").read_text())))
    assert rows[0][6:8] == ["ARC-e", "ARC-e se"]
    assert float(rows[1][6]) == pytest.approx(d_arc) and float(rows[1][7]) == pytest.approx(se_arc)
    assert r"$\pm$" in (tmp_path / "t" / "zeroshot-diff.tex").read_text()


def test_zeroshot_diff_needs_apt_and_another_model_at_its_pattern(tmp_path):
    only_apt = {k: v for k, v in ZS.items() if k != "dense" and k[0] == "apt"}
    assert zeroshot_diff_table(collect_records(_zs_tree(tmp_path / "a", only_apt))) is None
    no_common_seed = {("apt", 1): ZS[("apt", 1)], ("wanda", 0): ZS[("wanda", 0)]}
    assert zeroshot_diff_table(collect_records(_zs_tree(tmp_path / "b", no_common_seed))) is None
    written = build_report(_zs_tree(tmp_path / "c", only_apt), tmp_path / "t", None, None)
    assert not any("zeroshot-diff" in p for p in written["tables"])
    # without acc_stderr (older files) the differences are bare numbers, without markers
    files = _zs_tree(tmp_path / "d", {"dense": ZS["dense"], ("apt", 1): ZS[("apt", 1)]})
    for f in files:
        if f.name == "zeroshot.json":
            data = json.loads(f.read_text())
            for t in data["tasks"].values():
                del t["acc_stderr"]
            f.write_text(json.dumps(data))
    table = zeroshot_diff_table(collect_records(files))
    assert table.rows[0][1][0] == pytest.approx(-0.10) and not table.has_estimate


# ------------------------------------------------------------------ OWL next to uniform
def _owl_tree(root, allocation, sgpt, apt):
    m = root / "metrics" / "m"
    files = [_write(m / "dense" / "ppl-wiki.json", _ppl_windows("org/m", "wiki", DENSE_W))]
    for method, w in (("sparsegpt", sgpt), ("apt", apt)):
        f, ckpt = _variant(m, f"{method}-u50-s0", method, "unstructured", 0, files, allocation)
        files.append(_write(f / "ppl-wiki.json", _ppl_windows(ckpt, "wiki", w)))
    return files


def test_owl_and_uniform_runs_side_by_side(tmp_path):
    owl_sgpt, owl_apt = [3.3, 3.6, 3.4, 3.8], [3.1, 3.4, 3.2, 3.6]
    uniform = _owl_tree(tmp_path / "A", None, SGPT_W[0], APT_W[0])   # an older report: no field
    owl = _owl_tree(tmp_path / "B", "owl", owl_sgpt, owl_apt)   # the dense model evaluated again
    recs = collect_records([tmp_path / "A" / "metrics", tmp_path / "B" / "metrics"])
    assert sum(r.variant.method == "dense" for r in recs) == 1   # alike: kept once
    assert {r.variant.allocation for r in recs if r.variant.method == "apt"} == {"uniform", "owl"}
    build_report(uniform + owl, tmp_path / "t", tmp_path / "plots", tmp_path / "s.json")
    md = (tmp_path / "t" / "ppl.md").read_text().splitlines()
    methods = [line.split(" | ")[1] for line in md if line.startswith("| m |")]
    assert methods == ["Dense", "SparseGPT", "SparseGPT + OWL", "APT", "APT + OWL"]
    # the gap compares like with like (APT + OWL against SparseGPT + OWL), and APT + OWL also
    # against the uniform SparseGPT
    ppl = lambda w: math.exp(sum(w) / 4)                                # noqa: E731
    closed = {"uniform": (ppl(SGPT_W[0]) - ppl(APT_W[0])) / (ppl(SGPT_W[0]) - ppl(DENSE_W)),
              "owl": (ppl(owl_sgpt) - ppl(owl_apt)) / (ppl(owl_sgpt) - ppl(DENSE_W)),
              "cross": (ppl(SGPT_W[0]) - ppl(owl_apt)) / (ppl(SGPT_W[0]) - ppl(DENSE_W))}
    assert len(set(closed.values())) == 3
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "gap.csv").read_text())))
    assert [r[1] for r in rows[1:]] == ["50%", "50% (OWL)", "50% (OWL vs uniform)"]
    assert float(rows[1][3]) == pytest.approx(closed["uniform"], rel=1e-12)
    assert float(rows[2][3]) == pytest.approx(closed["owl"], rel=1e-12)
    assert float(rows[2][4]) == pytest.approx(closure_se(DENSE_W, owl_sgpt, owl_apt), rel=1e-12)
    assert float(rows[3][3]) == pytest.approx(closed["cross"], rel=1e-12)
    assert float(rows[3][4]) == pytest.approx(closure_se(DENSE_W, SGPT_W[0], owl_apt), rel=1e-12)
    summary = json.loads((tmp_path / "s.json").read_text())
    node = summary["m"]["apt+owl"]["50%"]
    assert node["gap_closed"]["wiki"]["mean"] == pytest.approx(closed["owl"])
    assert node["gap_closed_vs_uniform"]["wiki"]["mean"] == pytest.approx(closed["cross"])
    assert "gap_closed_vs_uniform" not in summary["m"]["apt"]["50%"]
    assert summary["m"]["sparsegpt"]["50%"]["ppl"]["wiki"] == pytest.approx(ppl(SGPT_W[0]))
    # the plots draw one line per method and allocation
    series = _series([r for r in recs if r.kind == "ppl"], lambda r: (r.values["wiki"], math.nan))
    assert sorted(v.method_id for v in series) == ["apt", "apt+owl", "sparsegpt", "sparsegpt+owl"]
    assert (tmp_path / "plots" / "m-ppl.png").stat().st_size > 0


def test_the_same_owl_run_twice_is_still_refused(tmp_path):
    a = _owl_tree(tmp_path / "A", "owl", SGPT_W[0], APT_W[0])
    b = _owl_tree(tmp_path / "B", "owl", SGPT_W[1], APT_W[1])
    with pytest.raises(AptError, match=r"two ppl results for m (sparsegpt|apt)\+owl 50%"):
        build_report(a + b, tmp_path / "t")
    # the dense model evaluated again under another protocol is not the same reference
    c = _owl_tree(tmp_path / "C", None, SGPT_W[0], APT_W[0])
    other = _ppl_windows("org/m", "wiki", DENSE_W + [3.0])
    _write(c[0], other)
    with pytest.raises(AptError, match="two ppl results for m dense dense, wiki"):
        build_report(_owl_tree(tmp_path / "D", "owl", SGPT_W[0], APT_W[0]) + c, tmp_path / "t")


# ------------------------------------------------------------------ APT with method options
def test_apt_with_options_is_its_own_variant_against_the_default_sparsegpt(tmp_path):
    """A run with `apt prune --option` beside the default one (another results folder): its own
    row, gap row and summary key, measured against the SparseGPT without options."""
    files = _owl_tree(tmp_path / "A", None, SGPT_W[0], APT_W[0])
    m = tmp_path / "B" / "metrics" / "m"
    report = _prune_report("org/m", "apt", "unstructured", 0.5, 0)
    report["settings"]["options"] = {"admm_rho": 1.25, "admm_ramp": 2}
    files.append(_write(m / "apt-u50-s0" / "prune.json", report))
    files.append(_write(m / "apt-u50-s0" / "ppl-wiki.json",
                        _ppl_windows("ckpt/apt-u50-s0", "wiki", APT_W[1])))
    recs = collect_records([tmp_path / "A" / "metrics", tmp_path / "B" / "metrics"])
    assert {r.variant.options for r in recs if r.variant.method == "apt"} == \
        {"", "admm_ramp=2, admm_rho=1.25"}
    build_report(files, tmp_path / "t", tmp_path / "plots", tmp_path / "s.json")
    md = (tmp_path / "t" / "ppl.md").read_text().splitlines()
    methods = [line.split(" | ")[1] for line in md if line.startswith("| m |")]
    assert methods == ["Dense", "SparseGPT", "APT", "APT (admm_ramp=2, admm_rho=1.25)"]
    ppl = lambda w: math.exp(sum(w) / 4)                                # noqa: E731
    closed = [(ppl(SGPT_W[0]) - ppl(a)) / (ppl(SGPT_W[0]) - ppl(DENSE_W))
              for a in (APT_W[0], APT_W[1])]
    assert closed[0] != closed[1]
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "gap.csv").read_text())))
    assert [r[1] for r in rows[1:]] == ["50%", "50% (admm_ramp=2, admm_rho=1.25)"]
    assert [float(r[3]) for r in rows[1:]] == pytest.approx(closed, rel=1e-12)
    summary = json.loads((tmp_path / "s.json").read_text())
    node = summary["m"]["apt[admm_ramp=2, admm_rho=1.25]"]["50%"]
    assert node["gap_closed"]["wiki"]["mean"] == pytest.approx(closed[1])
    report["settings"]["options"] = ["admm_rho"]
    _write(m / "apt-u50-s0" / "prune.json", report)
    with pytest.raises(AptError, match="settings.options"):
        collect_records([m])


def test_option_labels_tell_a_string_from_the_value_it_spells():
    """Two prunes whose options differ only in type (the YAML string "1", the integer 1) are
    different variants: their labels differ; plain strings stay bare."""
    from apt.report.records import options_label

    assert options_label({"refit": "cg", "admm_ramp": 2}) == "admm_ramp=2, refit=cg"
    assert options_label({"x": "1"}) != options_label({"x": 1})
    assert options_label({"x": "false"}) != options_label({"x": False})
    assert options_label({}) == ""


def test_zeroshot_diff_is_paired_where_both_files_carry_each_items_score(tmp_path):
    """Two models that differ on a few of the same 400 items: the paired error
    sd(a_i - b_i) / sqrt(n) is far below the unpaired one and marks the difference; files
    without the items (or on other items) fall back to the unpaired error."""
    n = 400
    base = [1.0 if (i * 7) % 10 < 5 else 0.0 for i in range(n)]        # 50 % right
    better = list(base)
    for i in range(n):                                                  # 12 more right
        if base[i] == 0.0 and i % 13 == 0:
            better[i] = 1.0
    gained = sum(better) - sum(base)

    def zs(model, scores, ids=None):
        acc = sum(scores) / n
        se = math.sqrt(acc * (1 - acc) / (n - 1))
        return {"evaluation": "zeroshot", "model": model, "settings": {"limit": n},
                "tasks": {"piqa": {"acc": acc, "acc_stderr": se, "n": n,
                                   "items": {"doc_id": ids or list(range(n)), "acc": scores}}}}

    m = tmp_path / "metrics" / "m"
    files = []
    for method, scores in (("apt", better), ("sparsegpt", base)):
        f, ckpt = _variant(m, f"{method}-s0", method, "unstructured", 0, files)
        files.append(_write(f / "zeroshot.json", zs(ckpt, scores)))
    build_report(files, tmp_path / "t", None, None)
    row = [line for line in (tmp_path / "t" / "zeroshot-diff.md").read_text().splitlines()
           if "| SparseGPT |" in line][0].split(" | ")
    d = [a - b for a, b in zip(better, base)]
    mean = sum(d) / n
    paired = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)
    unpaired = math.hypot(*(math.sqrt(p * (1 - p) / (n - 1)) for p in (sum(better) / n, 0.5)))
    assert row[5] == "paired"
    assert row[6] == f"{100 * gained / n:.2f} ± {100 * paired:.2f}*"
    assert paired < unpaired / 3 and gained / n < 2 * unpaired     # unpaired: not significant
    # APT's file on other items: unpaired
    _write(m / "apt-s0" / "zeroshot.json", zs("ckpt/apt-s0", better, ids=list(range(1, n + 1))))
    build_report(files, tmp_path / "t2", None, None)
    row = [line for line in (tmp_path / "t2" / "zeroshot-diff.md").read_text().splitlines()
           if "| SparseGPT |" in line][0].split(" | ")
    assert row[5] == "unpaired" and row[6] == f"{100 * gained / n:.2f} ± {100 * unpaired:.2f}"
