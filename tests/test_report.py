"""apt report: tables laid out like the papers', built from the settings inside the JSONs."""

import csv
import io
import json
import math
import statistics

import pytest

from apt.cli import main
from apt.errors import AptError
from apt.report import build_report, collect_records, format_ppl, gap_closed, gap_closure
from apt.report.seeds import mean_records


def _prune_report(model, method, pattern, sparsity, seed=0):
    return {"settings": {"method": method, "pattern": pattern, "sparsity": sparsity},
            "totals": {"sparsity": sparsity, "modules": 7}, "time_s": {"total": 1.5},
            "model": model,
            "calibration": {"dataset": "c4-sample", "nsamples": 4, "seqlen": 32, "seed": seed}}


def _ppl(model, dataset, ppl):
    return {"evaluation": "perplexity", "model": model, "dataset": dataset, "ppl": ppl,
            "windows": 3, "settings": {"seqlen": 32, "max_windows": 3}}


def _zs(model, accs):
    return {"evaluation": "zeroshot", "model": model,
            "tasks": {t: {"acc": a, "n": 10} for t, a in accs.items()}, "settings": {"limit": 10}}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def metrics(tmp_path):
    """A results tree as the workflow lays it out. The folder names deliberately disagree with
    the settings inside (e.g. 'x1' holds wanda 2:4): the report must read the JSONs."""
    m = tmp_path / "metrics" / "tiny"
    files = [_write(m / "dense" / "ppl-wiki.json", _ppl("hub-org/tiny", "wiki", 20.0)),
             _write(m / "dense" / "ppl-c4.json", _ppl("hub-org/tiny", "c4", 30.0)),
             _write(m / "dense" / "zeroshot.json", _zs("hub-org/tiny", {"piqa": 0.7, "boolq": 0.6}))]
    runs = {"x1": ("wanda", "2:4", 0.5, 45.0, 17000.0), "x2": ("magnitude", "unstructured", 0.5, 1234.0, 99.5),
            "x3": ("wanda", "unstructured", 0.5, 25.0, 35.0)}
    for folder, (method, pattern, sparsity, p_wiki, p_c4) in runs.items():
        ckpt = f"results/models/tiny/{folder}"
        files.append(_write(m / folder / "prune.json",
                            _prune_report("hub-org/tiny", method, pattern, sparsity)))
        files.append(_write(m / folder / "ppl-wiki.json", _ppl(ckpt, "wiki", p_wiki)))
        files.append(_write(m / folder / "ppl-c4.json", _ppl(ckpt, "c4", p_c4)))
        files.append(_write(m / folder / "zeroshot.json", _zs(ckpt, {"piqa": 0.6, "boolq": 0.5})))
    return files


@pytest.mark.parametrize("value, text", [(27.664, "27.66"), (999.994, "999.99"),
                                         (1234.0, "1.2e3"), (17000.0, "1.7e4"),
                                         (99999.0, "1.0e5"), (math.inf, "inf"), (math.nan, "–")])
def test_exploding_perplexities_use_1e3_notation(value, text):
    assert format_ppl(value) == text


def test_settings_come_from_the_json_not_the_folder_names(metrics):
    recs = collect_records(metrics)
    by_source = {r.source.split("metrics/")[1]: r for r in recs}
    v = by_source["tiny/x1/ppl-wiki.json"].variant
    assert (v.model, v.method, v.pattern, v.sparsity) == ("tiny", "wanda", "2:4", 0.5)
    assert by_source["tiny/dense/ppl-wiki.json"].variant.method == "dense"
    assert by_source["tiny/x2/prune.json"].kind == "prune"


def test_ppl_table_layout_dense_first_patterns_by_datasets(tmp_path, metrics):
    build_report(metrics, tmp_path / "tables", tmp_path / "plots", tmp_path / "metrics.json")
    md = (tmp_path / "tables" / "ppl.md").read_text().splitlines()
    assert md[0] == "| Model | Method | 50% wiki | 50% C4 | 2:4 wiki | 2:4 C4 |"
    # dense row first, its reference value in every pattern group; then methods in paper order
    assert md[2] == "| tiny | Dense | 20.00 | 30.00 | 20.00 | 30.00 |"
    assert md[3] == "| tiny | Magnitude | 1.2e3 | 99.50 | – | – |"
    assert md[4] == "| tiny | Wanda | 25.00 | 35.00 | 45.00 | 1.7e4 |"
    rows = list(csv.reader(io.StringIO((tmp_path / "tables" / "ppl.csv").read_text())))
    assert rows[2][:4] == ["tiny", "Magnitude", "1234.0", "99.5"]
    tex = (tmp_path / "tables" / "ppl.tex").read_text()
    assert r"\multicolumn{2}{c}{50\%}" in tex and r"\multicolumn{2}{c}{2:4}" in tex
    assert "1.7e4" in tex and tex.count(r"\\") == 5   # group header, header, 3 rows
    zs = (tmp_path / "tables" / "zeroshot.md").read_text().splitlines()
    assert zs[0] == "| Model | Method | Pattern | BoolQ | PIQA | Mean |"
    assert zs[2] == "| tiny | Dense | dense | 60.00 | 70.00 | 65.00 |"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["tiny-acc.png", "tiny-ppl.png"]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["tiny"]["wanda"]["2:4"]["ppl"]["c4"] == 17000.0
    assert summary["tiny"]["dense"]["dense"]["acc"]["mean"] == pytest.approx(0.65)
    assert summary["tiny"]["magnitude"]["50%"]["sparsity"] == 0.5


def test_command_line_and_errors(tmp_path, metrics, capsys):
    assert main(["report", "--metrics", str(tmp_path / "metrics"), "--out-dir",
                 str(tmp_path / "t")]) == 0
    assert "| tiny | Dense |" in capsys.readouterr().out
    bad = _write(tmp_path / "bad" / "ppl.json", {"evaluation": "perplexity", "model": "m"})
    with pytest.raises(AptError, match="without 'ppl'"):
        collect_records([bad])
    assert main(["report", "--metrics", str(tmp_path / "nothing"), "--out-dir", "x"]) == 2


# ------------------------------------------------------------ calibration seeds and the gap
DENSE = {"wiki": 19.4203, "c4": 46.9779}
ACC = {"dense": {"piqa": 0.72, "arc_easy": 0.52}, "sparsegpt": {"piqa": 0.68, "arc_easy": 0.32},
       "apt": {"piqa": 0.6, "arc_easy": 0.44}}


def _tree(root, runs, accs=ACC):
    """A results tree: the dense model, then ``runs``: {(method, pattern, seed): {dataset: ppl}}
    (sparsity 0.5), each with a prune report, perplexities and a zero-shot result."""
    m = root / "metrics" / "m"
    files = [_write(m / "dense" / f"ppl-{d}.json", _ppl("org/m", d, x)) for d, x in DENSE.items()]
    files.append(_write(m / "dense" / "zeroshot.json", _zs("org/m", accs["dense"])))
    for i, ((method, pattern, seed), ppl) in enumerate(runs.items()):
        f = m / f"run{i}"
        files.append(_write(f / "prune.json", _prune_report("org/m", method, pattern, 0.5, seed)))
        files += [_write(f / f"ppl-{d}.json", _ppl(f"ckpt/run{i}", d, x)) for d, x in ppl.items()]
        acc = accs[method] if seed == 0 else {t: a + 0.04 * seed for t, a in accs[method].items()}
        files.append(_write(f / "zeroshot.json", _zs(f"ckpt/run{i}", acc)))
    return files


ONE_SEED = {("sparsegpt", "unstructured", 0): {"wiki": 42.044, "c4": 129.276},
            ("apt", "unstructured", 0): {"wiki": 35.536, "c4": 101.601},
            ("sparsegpt", "2:4", 0): {"wiki": 89.515, "c4": 1278.02},
            ("apt", "2:4", 0): {"wiki": 67.676, "c4": 196.447}}

# What the report wrote for ONE_SEED before it knew about seeds (recorded from that version).
OLD_PPL_MD = (
    '| Model | Method | 50% wiki | 50% C4 | 2:4 wiki | 2:4 C4 |\n|:---|:---|---:|---:|---:|---:|\n'
    '| m | Dense | 19.42 | 46.98 | 19.42 | 46.98 |\n| m | SparseGPT | 42.04 | 129.28 | 89.52 | 1.3e3 |\n'
    '| m | APT | 35.54 | 101.60 | 67.68 | 196.45 |\n\n'
    '- perplexity: windows of 32 tokens, first 3 windows (3 evaluated)\n'
    '- calibration: 4 x 32 tokens of c4-sample, seed 0\n')
OLD_PPL_CSV = (
    'Model,Method,50% wiki,50% C4,2:4 wiki,2:4 C4\nm,Dense,19.4203,46.9779,19.4203,46.9779\n'
    'm,SparseGPT,42.044,129.276,89.515,1278.02\nm,APT,35.536,101.601,67.676,196.447\n')
OLD_ZS_MD = (
    '| Model | Method | Pattern | ARC-e | PIQA | Mean |\n|:---|:---|:---|---:|---:|---:|\n'
    '| m | Dense | dense | 52.00 | 72.00 | 62.00 |\n| m | SparseGPT | 50% | 32.00 | 68.00 | 50.00 |\n'
    '| m | APT | 50% | 44.00 | 60.00 | 52.00 |\n| m | SparseGPT | 2:4 | 32.00 | 68.00 | 50.00 |\n'
    '| m | APT | 2:4 | 44.00 | 60.00 | 52.00 |\n\n'
    '- zero-shot accuracy (lm-eval `acc`), items per task: 10\n'
    '- calibration: 4 x 32 tokens of c4-sample, seed 0\n')
OLD_ZS_CSV = (
    'Model,Method,Pattern,ARC-e,PIQA,Mean\nm,Dense,dense,0.52,0.72,0.62\nm,SparseGPT,50%,0.32,0.68,0.5\n'
    'm,APT,50%,0.44,0.6,0.52\nm,SparseGPT,2:4,0.32,0.68,0.5\nm,APT,2:4,0.44,0.6,0.52\n')


def test_one_seed_gives_the_old_tables_byte_for_byte(tmp_path):
    build_report(_tree(tmp_path, ONE_SEED), tmp_path / "t", None, tmp_path / "metrics.json")
    t = tmp_path / "t"
    assert (t / "ppl.md").read_text() == OLD_PPL_MD
    assert (t / "ppl.csv").read_text() == OLD_PPL_CSV
    assert (t / "zeroshot.md").read_text() == OLD_ZS_MD
    assert (t / "zeroshot.csv").read_text() == OLD_ZS_CSV
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["m"]["apt"]["2:4"]["ppl"] == {"wiki": 67.676, "c4": 196.447}
    assert "per_seed" not in summary["m"]["apt"]["2:4"]


def test_gap_closed_from_constructed_records_equals_the_hand_computation(tmp_path):
    runs = {}
    sgpt = {0: 42.0, 1: 40.0, 2: 45.0}
    apt = {0: 35.0, 1: 36.0, 2: 30.0}
    for seed in sgpt:
        runs[("sparsegpt", "unstructured", seed)] = {"wiki": sgpt[seed], "c4": 100.0 + seed}
        runs[("apt", "unstructured", seed)] = {"wiki": apt[seed], "c4": 90.0}
    runs[("sparsegpt", "2:4", 0)] = {"wiki": 60.0, "c4": 200.0}   # no APT at 2:4: no gap row
    cells = gap_closure(collect_records(_tree(tmp_path, runs)))
    assert {(c.variant.pattern_label, c.dataset) for c in cells} == {("50%", "wiki"), ("50%", "c4")}
    wiki = next(c.closed for c in cells if c.dataset == "wiki")
    by_hand = [(42 - 35) / (42 - 19.4203), (40 - 36) / (40 - 19.4203), (45 - 30) / (45 - 19.4203)]
    assert wiki.seeds == (0, 1, 2)
    assert wiki.values == pytest.approx(by_hand, rel=1e-12)
    assert wiki.mean == pytest.approx(sum(by_hand) / 3, rel=1e-12)
    assert (wiki.min, wiki.max) == (pytest.approx(min(by_hand)), pytest.approx(max(by_hand)))
    assert gap_closed(50.0, 50.0, 20.0) == 0 and gap_closed(50.0, 20.0, 20.0) == 1
    assert gap_closed(50.0, 60.0, 20.0) == pytest.approx(-1 / 3)
    assert math.isnan(gap_closed(20.0, 10.0, 20.0))   # no gap to close

    build_report(_tree(tmp_path / "b", runs), tmp_path / "t", None, tmp_path / "metrics.json")
    md = (tmp_path / "t" / "gap.md").read_text().splitlines()
    assert md[0] == ("| Model | Pattern | Seeds | wiki mean | wiki std | wiki min | wiki max "
                     "| C4 mean | C4 std | C4 min | C4 max |")
    std = statistics.stdev(by_hand)
    assert md[2].startswith(f"| m | 50% | 0, 1, 2 | {100 * sum(by_hand) / 3:.1f} | "
                            f"{100 * std:.1f} | {100 * min(by_hand):.1f} | {100 * max(by_hand):.1f} |")
    summary = json.loads((tmp_path / "metrics.json").read_text())
    g = summary["m"]["apt"]["50%"]["gap_closed"]["wiki"]
    assert g["seeds"] == [0, 1, 2] and g["mean"] == pytest.approx(sum(by_hand) / 3)
    assert g["std"] == pytest.approx(std)


def test_tables_over_seeds_show_mean_and_sample_std(tmp_path):
    runs = {("sparsegpt", "unstructured", s): {"wiki": w, "c4": 100.0} for s, w in
            ((0, 40.0), (1, 42.0), (2, 47.0))}
    runs.update({("apt", "unstructured", s): {"wiki": 30.0 + s, "c4": 90.0} for s in range(3)})
    files = _tree(tmp_path, runs)
    build_report(files, tmp_path / "t", tmp_path / "plots", tmp_path / "metrics.json")
    md = (tmp_path / "t" / "ppl.md").read_text().splitlines()
    sd = statistics.stdev([40.0, 42.0, 47.0])
    assert md[2] == "| m | Dense | 19.42 | 46.98 |"        # the dense model has no seed
    assert md[3] == f"| m | SparseGPT | 43.00 ± {sd:.2f} | 100.00 ± 0.00 |"
    assert md[4] == "| m | APT | 31.00 ± 1.00 | 90.00 ± 0.00 |"
    assert "- calibration: 4 x 32 tokens of c4-sample, seeds 0, 1, 2" in md
    assert any("mean ± sample standard deviation" in line for line in md)
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "ppl.csv").read_text())))
    assert rows[0] == ["Model", "Method", "wiki", "wiki std", "C4", "C4 std"]   # one pattern
    assert rows[1] == ["m", "Dense", "19.4203", "", "46.9779", ""]
    assert rows[2][2:4] == [repr(43.0), repr(sd)]
    assert r"43.00 $\pm$" in (tmp_path / "t" / "ppl.tex").read_text()
    # zero-shot: per task and the per-seed mean over tasks, each over the seeds
    zs = (tmp_path / "t" / "zeroshot.md").read_text().splitlines()
    # APT: arc_easy 0.44, 0.48, 0.52 and piqa 0.60, 0.64, 0.68 over seeds 0, 1, 2
    assert zs[4] == "| m | APT | 50% | 48.00 ± 4.00 | 64.00 ± 4.00 | 56.00 ± 4.00 |"
    summary = json.loads((tmp_path / "metrics.json").read_text())
    node = summary["m"]["sparsegpt"]["50%"]
    assert node["seeds"] == [0, 1, 2]
    assert node["ppl"]["wiki"] == pytest.approx(43.0) and node["ppl_std"]["wiki"] == pytest.approx(sd)
    assert node["per_seed"]["2"]["ppl"]["wiki"] == 47.0 and node["sparsity"] == 0.5
    assert summary["m"]["dense"]["dense"]["ppl"]["wiki"] == 19.4203
    # plots draw the means: one record per variant
    means = mean_records(collect_records(files))
    sgpt = [r for r in means if r.kind == "ppl" and r.variant.method == "sparsegpt"]
    assert len(sgpt) == 1 and sgpt[0].values == {"wiki": pytest.approx(43.0), "c4": 100.0}


def test_two_results_for_the_same_seed_are_refused(tmp_path):
    again = [f for f in _tree(tmp_path / "b", ONE_SEED) if "dense" not in str(f)]
    with pytest.raises(AptError, match="SparseGPT|sparsegpt 50%, calibration seed 0, wiki: .*a/"):
        build_report(_tree(tmp_path / "a", ONE_SEED) + again, tmp_path / "t")
    other = _tree(tmp_path / "d", {})
    _write(other[0], _ppl("org/m", "wiki", DENSE["wiki"] * 1.01))   # the dense model, another figure
    with pytest.raises(AptError, match="two ppl results for m dense dense, wiki"):
        build_report(_tree(tmp_path / "c", ONE_SEED) + other, tmp_path / "t")


def _timed_report(method, pattern, seed, module_times, total, rss):
    report = _prune_report("hub-org/tiny", method, pattern, 0.5, seed)
    report["modules"] = [{"name": f"layers.{i}.q", "time_s": t} for i, t in enumerate(module_times)]
    report["time_s"] = {"total": total}
    report["memory"] = {"cpu_max_rss_mb": rss}
    return report


def test_cost_table_sums_module_times_and_divides_by_sparsegpt_per_draw(tmp_path):
    m = tmp_path / "metrics" / "tiny"
    times = {("sparsegpt", 0): [1.0, 3.0], ("sparsegpt", 1): [2.0, 2.0],
             ("apt", 0): [1.5, 4.5], ("apt", 1): [2.0, 3.0]}
    files = [_write(m / f"{meth}-s{s}" / "prune.json",
                    _timed_report(meth, "2:4", s, t, total=10.0 + s, rss=900.0 + s))
             for (meth, s), t in times.items()]
    files += [_write(f.parent / "ppl-wiki.json", _ppl(f"results/{f.parent.name}", "wiki", 30.0))
              for f in list(files)]
    build_report(files, tmp_path / "t", None, tmp_path / "metrics.json")
    rows = list(csv.reader(io.StringIO((tmp_path / "t" / "cost.csv").read_text())))
    header, body = rows[0], {r[2]: r for r in rows[1:]}
    col = {h: i for i, h in enumerate(header)}
    apt, sgpt = body["APT"], body["SparseGPT"]
    # solver time: the modules' sum, mean over the two draws; ratio: per draw, then the mean
    assert float(apt[col["solver (s)"]]) == pytest.approx((6.0 + 5.0) / 2)
    assert float(sgpt[col["solver (s)"]]) == pytest.approx(4.0)
    assert float(apt[col["x SparseGPT"]]) == pytest.approx((6.0 / 4.0 + 5.0 / 4.0) / 2)
    assert float(sgpt[col["x SparseGPT"]]) == pytest.approx(1.0)
    assert float(apt[col["x SparseGPT std"]]) == pytest.approx(statistics.stdev([1.5, 1.25]))
    assert float(apt[col["job (s)"]]) == pytest.approx(10.5)
    assert float(apt[col["peak RSS (MB)"]]) == pytest.approx(900.5)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["tiny"]["apt"]["2:4"]["solver_time_s"] == pytest.approx(5.5)


def test_cost_table_without_sparsegpt_has_no_ratio(tmp_path):
    f = _write(tmp_path / "m" / "prune.json", _timed_report("wanda", "2:4", 0, [1.0], 2.0, 5.0))
    ppl = _write(tmp_path / "m" / "ppl-wiki.json", _ppl("results/x", "wiki", 30.0))
    build_report([f, ppl], tmp_path / "t", None, None)
    md = (tmp_path / "t" / "cost.md").read_text()
    assert "| tiny | 2:4 | Wanda | 1.00 | – | 2.00 | 5.00 |" in md
