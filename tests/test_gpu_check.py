"""bench/gpu_check.sh --cpu-smoke: every step of the prepared GPU check at toy sizes on the CPU, within the
3 minutes the issue allows, writing the JSON and markdown that a GPU run would write (issue 13)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import REPO


def _has_bf16_lstm() -> bool:
    from textvae.modeling.checkpoint import bf16_supported
    return bf16_supported("cpu")


@pytest.mark.slow
def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-smoke", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=240, env=env)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert took < 180, f"the CPU smoke run took {took:.0f} s (limit 180 s)"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]

    res = json.loads((out / "gpu_check.json").read_text())
    steps = res["steps"]
    assert res["mode"] == "cpu-smoke" and res["finished"]
    assert list(steps) == ["env", "data", "cuda_tests", "train", "iw", "packing", "tables"]
    assert {name: s["status"] for name, s in steps.items()} == {name: "ok" for name in steps}
    # the CUDA tests ran and were skipped with their reason
    counts = steps["cuda_tests"]["tests"]["counts"]
    assert counts["skipped"] >= 5 and counts["passed"] == counts["failure"] == counts["error"] == 0
    assert all("CUDA" in c["detail"] for c in steps["cuda_tests"]["tests"]["cases"])
    # every method in both precisions (aggressive twice: both clip rules)
    # (bf16 only where the machine has bfloat16 LSTM kernels: AVX2-only CPUs have none, and the report says so)
    rows = steps["train"]["rows"]
    precisions = ["fp32", "bf16"] if _has_bf16_lstm() else ["fp32"]
    assert {(r["method"], r["precision"]) for r in rows} == {
        (m, p) for m in ["ae", "vae", "ours", "iwae", "lm", "aggressive", "aggressive (encoder clip)"]
        for p in precisions}
    assert ("bf16" in steps["train"].get("skipped", {})) == ("bf16" not in precisions)
    assert all(r["sentences_per_s"] > 0 and r["device"] == "cpu" for r in rows)
    # IW-NLL: the authors' loop and ours in both precisions, with the floor's FLOP count
    assert set(steps["iw"]["rows"]) == {"authors' loop (fp32)", "ours (fp32)", "ours (bf16)"}
    assert steps["iw"]["floor"]["macs_ours"] > 0
    # packing through the slot pool: each level's jobs all ran, together
    levels = steps["packing"]["levels"]
    assert [lv["jobs"] for lv in levels] == [1, 2]
    for lv in levels:
        assert lv["status"] == "ok" and lv["completed"] == lv["jobs"] == lv["ready"]
        assert lv["aggregate_sentences_per_s"] > 0
        assert all(r["started_together"] for r in lv["rows"])
    # the Table 1-3 rows: the AE, then a plain run and one started from that AE, each with a finished epoch
    phases = steps["tables"]["phases"]
    assert [p["phase"] for p in phases] == ["ae alone", "all other rows at once"]
    assert [r["run"] for r in phases[0]["rows"]] == ["ae"] and len(phases[1]["rows"]) == 2
    for p in phases:
        for r in p["rows"]:
            assert r["exit"] == 0 and r["epochs"] >= 1 and r["sentences_per_s"] > 0, r

    md = (out / "gpu_check.md").read_text()
    for heading in ("### GPU check results", "CUDA tests", "Training throughput", "IW-NLL", "Packing", "Tables 1-3",
                    "Projection for one GPU"):
        assert heading in md
    assert "| ours (bf16) |" in md and "| 2 |" in md
