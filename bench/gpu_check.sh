#!/usr/bin/env bash
# The prepared GPU check of issue 13: CUDA tests, training and IW-NLL throughput, a packing curve and a short run
# of the PTB rows of Tables 1-3, within 9 minutes on one GPU. See bench/gpu_check.py and BENCHMARKS.md ("GPU").
#
#   bash bench/gpu_check.sh                      # on the GPU machine: results into $OUT (or --out DIR)
#   bash bench/gpu_check.sh --cpu-smoke --out D  # every step at toy sizes on the CPU, under 3 minutes
#   bash bench/gpu_check.sh --stage-data         # here, first: copy ../shared/data/ptb into data/gpu_check/ptb
#
# Needs only python3 with torch, numpy, pyyaml and tqdm (the package itself runs from src/, uninstalled);
# pytest for the CUDA tests. The whole script is killed 40 s after its budget if a step ignores its time box.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
limit=580
for a in "$@"; do [ "$a" = "--cpu-smoke" ] && limit=210; done
exec timeout -k 5 "${GPU_CHECK_LIMIT:-$limit}" "$py" "$here/gpu_check.py" "$@"
