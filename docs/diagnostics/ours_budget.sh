#!/bin/bash
# Ours λ = 7 fine-tuned from a pipeline AE with another budget, evaluated (KL, Rec) and probed as Table 8 does
# (docs/demo.md, "Ours' budget on grammar `early`"):
#   bash docs/diagnostics/ours_budget.sh DATASET SEED EPOCHS WARMUP OUT [extra textvae train options]
# e.g. bash docs/diagnostics/ours_budget.sh synthetic_early 1 6 4 runs/early_e6w4_s1
# Another target rate: `--lam L` among the extra options (the last --lam wins); the classifier's epochs: CLF_EPOCHS
# (default 5, the demo's; the paper's is 100), e.g. CLF_EPOCHS=100 bash ... synthetic_early 1 6 4 OUT --lam 10
# needs data/DATASET and results/DATASET/ae/seedSEED/best.pt (`snakemake --cores 2 demo_early`).
set -eu
DS=$1; S=$2; E=$3; W=$4; OUT=$5; shift 5
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
textvae train --data "data/$DS" --method ours --lam 7 --init-from "results/$DS/ae/seed$S/best.pt" --config params.yaml \
    --dataset "$DS" --seed "$S" --epochs "$E" --warm-up "$W" --out "$OUT" --no-progress "$@"
textvae evaluate --ckpt "$OUT/best.pt" --data "data/$DS" --split test --out "$OUT/eval_test.json" --au-threshold 0.01 \
    --iw-samples 0 --mi-variant li --no-progress
textvae probe classify --ckpt "$OUT/best.pt" --data "data/$DS" --out "$OUT/probe_classify.json" --gmm-components 10 \
    --gmm-rule top --label-sampling uniform --labels 100 500 --max-epochs "${CLF_EPOCHS:-5}" --optimizer sgd --quiet
