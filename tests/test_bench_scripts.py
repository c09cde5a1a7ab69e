"""The benchmark scripts behind BENCHMARKS.md's summary run end to end and write their sections (tiny sizes).
They time bf16, so they are skipped where the CPU has no bfloat16 LSTM kernels (AVX2-only machines)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from textvae.modeling.checkpoint import bf16_supported

SHARED_PTB = REPO.parent / "shared" / "data" / "ptb" / "ptb.train.txt"
needs = pytest.mark.skipif(not (bf16_supported("cpu") and SHARED_PTB.is_file()),
                           reason="needs bfloat16 LSTM kernels (AVX-512 BF16 or AMX) and ../shared/data/ptb")


def _run(tmp_path, script: str, *args: str) -> str:
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    p = subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--write", str(md)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    text = md.read_text()
    assert "## Other\n\nkept" in text
    return text


@needs
def test_bench_precision_writes_one_row_per_size(tmp_path):
    text = _run(tmp_path, "bench_precision.py", "--sizes", "1", "12", "-K", "20", "--repeat", "1")
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 |") or ln.startswith("| 12 |")]
    assert len(rows) == 2
    # one sentence: the check is that sentence at K / 10 samples; 12 sentences: 12 // 10 = 1 sentence at all K
    assert rows[0].endswith("| 1 × 2 |") and rows[1].endswith("| 1 × 20 |"), rows


@needs
def test_bench_step_profile_tables_both_precisions(tmp_path):
    text = _run(tmp_path, "bench_step_profile.py", "--batches", "2", "--top", "3")
    assert text.count("| op | ms per step (self) | share | calls per step |") == 2
    assert "fp32: " in text and "bf16: " in text and "`aten::mm`" in text
