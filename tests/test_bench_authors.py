"""bench/bench_authors.py (with authors_checkout.py, bench_authors_workers.py, bench_authors_report.py): textvae against the authors' own code.

The tests that need the authors' code look for a checkout of https://github.com/bohanli/vae-pretraining-encoder
in $TEXTVAE_AUTHORS_REPO (``git clone https://github.com/bohanli/vae-pretraining-encoder DIR``) and are skipped,
with that reason, when it is not set. The authors' modules are imported in a subprocess only (their top-level
names ``data``, ``modules``, ``utils`` would otherwise shadow other imports of this test session).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, shared_data_dir

sys.path.insert(0, str(REPO / "bench"))
import authors_checkout as ac  # noqa: E402
import bench_authors as ba  # noqa: E402
import bench_authors_report as rep  # noqa: E402

CORPUS = {
    "train": "the cat sat on the mat\na dog ran in the park\nthe park was green and quiet\nwe saw a cat today\n",
    "test": "the cat ran\na dog sat on the green mat\nzebra in the park\nwe ran\n",
}


def authors_repo() -> Path:
    d = os.environ.get("TEXTVAE_AUTHORS_REPO")
    if not d:
        pytest.skip("$TEXTVAE_AUTHORS_REPO is not set: give it a checkout of "
                    "https://github.com/bohanli/vae-pretraining-encoder to run the comparison with the authors' code")
    p = Path(d)
    if not (p / "text_anneal_fb.py").is_file() or not (p / "modules" / "vae.py").is_file():
        pytest.skip(f"$TEXTVAE_AUTHORS_REPO={d} is not a checkout of the authors' repository")
    return p


def _check(tmp_path: Path, mismap: bool) -> dict:
    src = authors_repo()
    patched = tmp_path / "authors_patched"
    if not patched.exists():
        ac.patched_copy(src, patched)
    for split, text in CORPUS.items():
        (tmp_path / f"{split}.txt").write_text(text)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_authors as b; "
            "print('RESULT ' + json.dumps(b.weight_copy_check(sys.argv[2], sys.argv[3], sys.argv[4], "
            f"mismap={mismap})))")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "bench"), str(patched),
                           str(tmp_path / "train.txt"), str(tmp_path / "test.txt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_weight_copy_gives_the_same_model(tmp_path):
    """The authors' VAE and a textvae VAE given its weights (AUTHORS_TO_TEXTVAE) compute the same q(z|x) and
    the same log p(x|z) on the same z: to 1e-5 nats, at the authors' initialisation and with every weight
    perturbed (where z and every parameter matter)."""
    res = _check(tmp_path, mismap=False)
    assert res["vocab_identical"]
    assert [c["weights"] for c in res["checks"]][1].startswith("perturbed")
    for c in res["checks"]:
        d = c["max_abs_diff"]
        assert d["mu"] <= 1e-6 and d["logvar"] <= 1e-6, c
        assert d["log_px_z"] <= 1e-5, c


def test_weight_copy_check_catches_a_wrong_correspondence(tmp_path):
    """The same check with textvae's decoder input read as [z; emb] instead of [emb; z] fails by far."""
    res = _check(tmp_path, mismap=True)
    perturbed = res["checks"][1]
    assert perturbed["max_abs_diff"]["log_px_z"] > 1e-2, perturbed


def test_patched_copy_changes_only_the_listed_lines(tmp_path):
    src = authors_repo()
    dest = tmp_path / "patched"
    changes = ac.patched_copy(src, dest)
    assert [(c["file"], c["line"]) for c in changes] == [(f, n) for f, n, *_ in ac.PATCHES]
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_dir() or ".git" in rel.parts or not (dest / rel).exists() and (
                rel.parts[0] in ("datasets", "__pycache__") or rel.parts[0].startswith("exp_")
                or "__pycache__" in rel.parts):
            continue
        a, b = p.read_bytes(), (dest / rel).read_bytes()
        if str(rel) != "utils.py":
            assert a == b, rel
            continue
        la, lb = a.decode().splitlines(), b.decode().splitlines()
        assert len(la) == len(lb)
        diff = [i + 1 for i, (x, y) in enumerate(zip(la, lb)) if x != y]
        assert diff == [120, 137, 138]
        assert all(".cuda()" in la[i - 1] and ".cuda()" not in lb[i - 1] for i in diff)
    assert ac.loop_sha(src) == ac.LOOP["sha256"], "their training loop changed: re-check authors_train_step"


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """--quick: every workload, both sides, the JSON, and --write into a copy of BENCHMARKS.md that keeps its
    other sections."""
    src = authors_repo()
    if not (shared_data_dir() / "ptb" / "ptb.train.txt").is_file():
        pytest.skip(f"PTB not found under {shared_data_dir()} (set TEXTVAE_SHARED_DATA)")
    md = tmp_path / "BENCHMARKS.md"
    before = (REPO / "BENCHMARKS.md").read_text()
    md.write_text(before)
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_authors.py"), "--authors", str(src),
                           "--quick", "--retries", "0", "--ptb", str(shared_data_dir() / "ptb"),
                           "--json", str(out), "--write", str(md)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["prep"]["vocab"]["identical"] and res["prep"]["batches"]["same_shapes"]
    assert res["prep"]["test_ids_identical"]
    sides = {(r["workload"], r["side"], r["precision"]) for r in res["runs"] if r.get("result")}
    precisions = ["fp32"] + ([] if res["skipped"].get("bf16") else ["bf16"])
    for wl in ba.WORKLOADS:
        assert (wl, "authors", "fp32") in sides
        for p in precisions if wl != "test" else ["fp32"]:     # the plain test pass is all fp32
            assert (wl, "textvae", p) in sides
    for r in res["runs"]:
        w = r["result"]["window"]
        assert w["seconds"] > 0 and w["other_cores"] is not None
        assert len(r["loadavg_before"]) == 3
    assert res["agreement"]["iw"]["textvae fp32"]["max_abs_diff"] < 0.05
    assert [c["line"] for c in res["changes"]] == [120, 137, 138]
    text = md.read_text()
    assert ba.HEADING in text and "| workload | authors fp32 |" in text
    old, new = _sections(before), _sections(text)
    assert {h: t for h, t in old.items() if h != ba.HEADING} == {h: t for h, t in new.items() if h != ba.HEADING}


def _sections(text: str) -> dict:
    """``## `` heading -> its text (the part before the first heading under "")."""
    out, head = {"": []}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            head = line.strip()
            out[head] = []
        out[head].append(line)
    return {h: "\n".join(ls).strip("\n") for h, ls in out.items()}


def test_write_section_replaces_only_its_section(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nintro\n\n## A\n\na\n\n## B\n\nb\n")
    ba.write_section(md, "## A", "## A\n\nnew a\n")
    assert md.read_text() == "# Benchmarks\n\nintro\n\n## A\n\nnew a\n\n## B\n\nb\n"
    ba.write_section(md, "## C", "## C\n\nc\n")
    assert md.read_text().endswith("## B\n\nb\n\n## C\n\nc\n")
    ba.write_section(md, "## C", "## C\n\nc2\n")
    assert md.read_text().count("## C") == 1 and md.read_text().endswith("c2\n")


def test_plan_spans_the_length_distribution():
    """Stratified picks cover every band of the length-sorted list; batch shapes follow both codebases'
    exact-length batching."""
    assert rep.batch_shapes([3, 1, 3, 3, 2], batch_size=2) == [[1, 3], [1, 4], [2, 5], [1, 5]]
    rng = random.Random(0)
    picks = rep.stratified(1000, 10, rng)
    assert len(picks) == 10 and all(100 * i <= p < 100 * (i + 1) for i, p in enumerate(picks))
    assert rep.stratified(3, 10, rng) == [0, 1, 2]


# ---- bench/fidelity_trajectories.py (issue 22, item 3) ------------------------------------------------------
def _traj_result(authors: list[float], textvae: list[float]) -> dict:
    seeds = list(range(max(len(authors), len(textvae))))
    runs = [{"side": side, "method": "vae", "seed": s, "neg_elbo": v, "kl": v / 10, "mi": 0.0, "au": 0,
             "seconds": 1.0}
            for side, vals in (("authors", authors), ("textvae", textvae)) for s, v in zip(seeds, vals)]
    return {"budget": {"seeds": seeds}, "runs": runs}


def test_trajectory_statistics_match_an_independent_computation():
    import itertools
    import math
    import statistics

    import fidelity_trajectories as ft
    a, t = [125.6, 124.2, 124.7, 124.8], [124.4, 125.5, 125.4, 124.9, 126.3]
    c = ft.summary(_traj_result(a, t))["vae"]["neg_elbo"]
    # Welch's t by hand: statistic, Welch-Satterthwaite df, two-sided p from the t distribution's CDF
    va, vt = statistics.variance(a) / len(a), statistics.variance(t) / len(t)
    tstat = (statistics.mean(a) - statistics.mean(t)) / math.sqrt(va + vt)
    df = (va + vt) ** 2 / (va ** 2 / (len(a) - 1) + vt ** 2 / (len(t) - 1))
    from scipy.special import betainc
    p = betainc(df / 2, 0.5, df / (df + tstat ** 2))           # = 2 (1 − F_t(|t|; df))
    assert c["welch_p"] == pytest.approx(p, rel=1e-9)
    assert c["diff"] == pytest.approx(statistics.mean(t) - statistics.mean(a))
    lo, hi = c["diff_ci95"]
    assert (lo + hi) / 2 == pytest.approx(c["diff"]) and lo < 0 < hi
    assert c["textvae_within_authors_range"] is False           # 126.3 lies above the authors' 125.6
    # the chance that every textvae value lies in the authors' range when all 9 are exchangeable: enumerate
    # every assignment of ranks to the two sides
    m, n = len(a), len(t)
    hits = sum(1 for pos in itertools.combinations(range(m + n), m) if 0 in pos and m + n - 1 in pos)
    assert c["p_within_if_equal"] == pytest.approx(hits / math.comb(m + n, m))
    text = ft.render(_traj_result(a, t))
    assert "| VAE | 0 | 125.60 / 124.40 |" in text and "neg_elbo: no" in text


def test_trajectories_run_against_the_authors_code(tmp_path):
    """A tiny budget end to end: both sides train, evaluate and are tabled (the numbers of docs/fidelity.md come
    from the same script at the issue's budget on a GPU)."""
    li = authors_repo()
    out = tmp_path / "traj.json"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "fidelity_trajectories.py"), "--authors", str(li),
                        "--ptb", str(shared_data_dir() / "ptb"), "--train", "200", "--valid", "60",
                        "--ae-epochs", "1", "--seeds", "1", "2", "--jobs", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert not res["failed"] and len(res["runs"]) == 8
    assert all(r["beta"] == 1.0 for r in res["runs"] if r["method"] == "vae")
    ours = {(r["side"], r["seed"]): r for r in res["runs"] if r["method"] == "ours"}
    # both codebases anneal β the same way: the same value after the same number of batches
    assert ours[("authors", 1)]["beta"] == pytest.approx(ours[("textvae", 1)]["beta"], rel=1e-9)
    assert ours[("authors", 1)]["beta"] < 1.0
