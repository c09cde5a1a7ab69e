#!/usr/bin/env bash
# How far back the demo's AE reads (docs/demo.md, "Reading the whole sentence"): train the demo's AE on DATA
# with one encoder initialisation, continue it to each epoch count of EPOCHS (--resume), and after each probe
# its means with docs/diagnostics/factor_probe.py (the four factors; --full: every position too).
#   bash docs/diagnostics/ae_reads.sh DATA OUT INIT "EPOCHS" [--full] [textvae train options]
# INIT: torch | torch_forget | torch_forget=B (the forget-gate bias B instead of textvae.modeling.model.FORGET_BIAS)
# e.g. bash docs/diagnostics/ae_reads.sh data/synthetic_early results/reads/torch torch "20 40 60 80"
#      bash docs/diagnostics/ae_reads.sh data/synthetic_early results/reads/lr1 torch "20" --lr 1.0
set -euo pipefail
data=$1; out=$2; init=$3; epochs=$4; shift 4
positions=--factors-only
if [ "${1:-}" = --full ]; then positions=; shift; fi
bias=${init#torch_forget=}
[ "$bias" = "$init" ] && bias=
here=$(cd "$(dirname "$0")" && pwd)
for e in $epochs; do
  OMP_NUM_THREADS=1 python - "$bias" train --data "$data" --method ae --out "$out" --config params.yaml \
      --dataset synthetic --seed 783435 --encoder-init "${init%%=*}" --epochs "$e" --warm-up 2 --no-progress \
      --resume "$@" > "$out.e$e.log" 2>&1 <<'PY'
import sys
import textvae.modeling.model
if sys.argv[1]:
    textvae.modeling.model.FORGET_BIAS = float(sys.argv[1])
from textvae.cli import main
sys.exit(main(sys.argv[2:]))
PY
  cp "$out/best.pt" "$out.best_e$e.pt"
  echo "== $out after $e epochs (best.pt)"
  OMP_NUM_THREADS=1 python "$here/factor_probe.py" "$out.best_e$e.pt" "$data" $positions --json "$out.e$e.probe.json"
done
