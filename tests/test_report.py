"""apt report: tables laid out like the papers', built from the settings inside the JSONs."""

import csv
import io
import json
import math

import pytest

from apt.cli import main
from apt.errors import AptError
from apt.report import build_report, collect_records, format_ppl


def _prune_report(model, method, pattern, sparsity):
    return {"settings": {"method": method, "pattern": pattern, "sparsity": sparsity},
            "totals": {"sparsity": sparsity, "modules": 7}, "time_s": {"total": 1.5},
            "model": model,
            "calibration": {"dataset": "c4-sample", "nsamples": 4, "seqlen": 32, "seed": 0}}


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
