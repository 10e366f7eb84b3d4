#!/bin/bash
# OWL against uniform at 70 % unstructured on SmolLM2-135M, one calibration draw (seed 0):
# Wanda, SparseGPT and APT, each uniform, OWL (spread band, the default) and OWL with the
# authors' spread; perplexity on the first 8 windows of 512 tokens of wiki and c4-sample.
# Usage: benchmarks/owl_smollm2.sh WORK_DIR, then
#        .venv/bin/python -m benchmarks.owl_collect WORK_DIR results/benchmarks/owl_smollm2.json
set -u
W=${1:?usage: benchmarks/owl_smollm2.sh WORK_DIR}
mkdir -p "$W"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
APT="${PYTHON:-.venv/bin/python} -m apt"
[ -f "$W/calib.pt" ] || $APT calib --model smollm2-135m --dataset c4-sample --nsamples 16 \
    --seqlen 512 --seed 0 --out "$W/calib.pt"
ev() {  # model, name
  for d in wiki c4-sample; do
    [ -f "$W/ppl-$2-$d.json" ] || $APT eval ppl --model "$1" --dataset $d --seqlen 512 \
        --max-windows 8 --out "$W/ppl-$2-$d.json"
  done
}
ev smollm2-135m dense
for m in wanda sparsegpt apt; do
  for a in uniform owl owl-authors; do
    n=$m-u70-$a
    flags="--allocation ${a%-authors}"
    [ "$a" = owl-authors ] && flags="$flags --owl-spread authors"
    [ -f "$W/$n/prune_report.json" ] || $APT prune --model smollm2-135m --method $m \
        --sparsity 0.7 $flags --calib "$W/calib.pt" --seed 0 --out "$W/$n" --no-progress \
        --force > "$W/$n.log" 2>&1
    ev "$W/$n" $n
  done
done
