"""Collect the runs of benchmarks/owl_smollm2.sh (WORK_DIR) into one JSON file (OUT): perplexity,
exact totals, per-block sparsities, outlier ratios (dense and on the pruned model's inputs),
the share of the uniform-to-dense gap OWL closes, and the authors' map for comparison."""
import json
import statistics
import sys
from pathlib import Path


W = OUT = None


def ppl(name):
    out = {}
    for d in ("wiki", "c4-sample"):
        f = W / f"ppl-{name}-{d}.json"
        if f.exists():
            out[d] = json.loads(f.read_text())["ppl"]
    return out
def rank(x):
    order = sorted(range(len(x)), key=lambda i: x[i]); r = [0]*len(x)
    for k, i in enumerate(order): r[i] = k
    return r
def spearman(a, b):
    ra, rb = rank(a), rank(b); n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))
APT = "PYTHONPATH=src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 APT_RESOURCES=resources .venv/bin/python -m apt"


def main(argv=None) -> int:
    global W, OUT
    argv = sys.argv[1:] if argv is None else argv
    W, OUT = Path(argv[0]), Path(argv[1])
    res = {
      "what": "OWL vs uniform allocation at 70 % unstructured on SmolLM2-135M, one calibration draw (seed in the commands), perplexity on the first 8 windows of 512 tokens",
      "machine": "project CPU machine (2 cores shared with other jobs, load ~15-19), 1 thread per process",
      "made_by": "benchmarks/owl_smollm2.sh WORK (run in two parts: uniform and owl first, owl-authors after), then python -m benchmarks.owl_collect WORK OUT",
      "commands": {
        "calib": f"{APT} calib --model smollm2-135m --dataset c4-sample --nsamples 16 --seqlen 512 --seed 0 --out W/calib.pt",
        "prune": f"{APT} prune --model smollm2-135m --method METHOD --sparsity 0.7 --allocation ALLOC --calib W/calib.pt --seed 0 --out W/METHOD-u70-ALLOC --no-progress",
        "prune_owl_authors": f"{APT} prune --model smollm2-135m --method METHOD --sparsity 0.7 --allocation owl --owl-spread authors --calib W/calib.pt --seed 0 --out W/METHOD-u70-owl-authors --no-progress",
        "eval": f"{APT} eval ppl --model MODEL --dataset DATASET --seqlen 512 --max-windows 8 --out W/ppl-NAME-DATASET.json  (DATASET: wiki, c4-sample)",
      },
      "owl": {"m": 5.0, "lambda": 0.08, "spread": "band (allocation owl) or authors (owl-authors)"},
      "gap_closed": "share of the uniform-to-dense perplexity gap that OWL closes, (ppl_uniform - ppl_owl) / (ppl_uniform - ppl_dense), per method and dataset",
      "dense": ppl("dense"),
      "runs": [],
    }
    for m in ("wanda", "sparsegpt", "apt"):
        for a in ("uniform", "owl", "owl-authors"):
            n = f"{m}-u70-{a}"
            rep = W / n / "prune_report.json"
            if not rep.exists():
                continue
            r = json.loads(rep.read_text())
            t = r["totals"]
            run = {"method": m, "allocation": a, "ppl": ppl(n), "sparsity": t["sparsity"],
                   "pruned": t["pruned"], "params": t["params"], "prune_wall_s": r["time_s"]["total"],
                   "solver_time_s": t["solver_time_s"], "mean_rel_layer_error": t["mean_rel_error"]}
            al = r["allocation"]
            run["block_sparsity"] = [b["sparsity"] for b in al["blocks"]]
            if a.startswith("owl"):
                dense = [b["outlier_ratio"] for b in al["blocks"]]
                seen = [b["outlier_ratio_pruned_inputs"] for b in al["blocks"]]
                lo, hi = min(dense), max(dense)
                norm = [(x - lo) / (hi - lo) for x in dense]
                sizes = [b["params"] for b in al["blocks"]]
                nbar = sum(x * s for x, s in zip(norm, sizes)) / sum(sizes)
                authors = [0.7 - (2 * 0.08 * x - statistics.mean(2 * 0.08 * y for y in norm)) for x in norm]
                run.update({"target_zeros": al["target_zeros"], "dense_pass_s": al["dense_pass_s"],
                            "outlier_ratio_dense": dense, "outlier_ratio_pruned_inputs": seen,
                            "spearman_dense_vs_pruned_inputs": spearman(dense, seen),
                            "nbar": nbar, "authors_map_block_sparsity": authors,
                            "block_sparsity_planned": [b["sparsity_planned"] for b in al["blocks"]]})
            res["runs"].append(run)
    dense = res["dense"]
    for run in res["runs"]:
        if run["allocation"] != "uniform":
            uni = next((r for r in res["runs"] if r["method"] == run["method"] and r["allocation"] == "uniform"), None)
            if uni:
                run["gap_closed_vs_uniform"] = {d: (uni["ppl"][d] - run["ppl"][d]) / (uni["ppl"][d] - dense[d])
                                                for d in run["ppl"] if d in uni["ppl"]}
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    for run in res["runs"]:
        print(run["method"], run["allocation"], {k: round(v, 2) for k, v in run["ppl"].items()},
              round(run["sparsity"], 6), round(run["prune_wall_s"]), run.get("spearman_dense_vs_pruned_inputs"), run.get("nbar"), run.get("gap_closed_vs_uniform"), run.get("dense_pass_s"))

    return 0


if __name__ == "__main__":
    sys.exit(main())
