#!/usr/bin/env bash
# How much of Table 8's GMM accuracy is the GMM's own initialisation: refit the unsupervised probe
# (SPEC §7.1: 10 components, k-means init, n_init 1) with N random states on each checkpoint's frozen
# encoder and print mean, min and max accuracy over them (the pipeline's probe uses random state 783435).
#   bash docs/diagnostics/gmm_spread.sh DATA N CKPT [CKPT ...]
# e.g. bash docs/diagnostics/gmm_spread.sh data/synthetic 10 results/synthetic/ours/lam7/seed*/best.pt
set -euo pipefail
data=$1; n=$2; shift 2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for ckpt in "$@"; do
  for ((i = 0; i < n; i++)); do
    OMP_NUM_THREADS=1 textvae probe classify --ckpt "$ckpt" --data "$data" --labels --quiet \
      --seed $((783435 + i)) --out "$tmp/gmm_$i.json" 2>/dev/null
  done
  python - "$ckpt" "$tmp" "$n" <<'PY'
import json, statistics, sys
ckpt, tmp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
acc = [json.load(open(f"{tmp}/gmm_{i}.json"))["gmm"]["accuracy"] for i in range(n)]
print(f"{ckpt}: GMM accuracy over {n} random states: mean {statistics.mean(acc):.1f}, "
      f"min {min(acc):.1f}, max {max(acc):.1f}; random state 783435: {acc[0]:.1f}")
PY
done
