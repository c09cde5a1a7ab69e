"""docs/diagnostics/classify_seeds.py (issue 24): how many training seeds pass the demo's classification check.
Its statistics against independent computations: the Clopper-Pearson interval against the binomial tails
summed by hand, and the rendered counts against a hand-made set of runs. The sweep itself runs the pipeline's
own commands (checked by the pipeline's tests); a run of it is committed in bench/results/classify_seeds_*/."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "diagnostics" / "classify_seeds.py"


def _load():
    return load_script(SCRIPT)


def _tail_ge(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _solve(f, lo=0.0, hi=1.0) -> float:
    """The root of an increasing f on [lo, hi] by bisection."""
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("k,n", [(0, 10), (3, 11), (8, 11), (10, 10), (1, 2), (7, 20)])
def test_clopper_pearson_inverts_the_binomial_tails(k, n):
    """The exact 95 % interval: the lower end is the p at which P(X ≥ k) = 2.5 %, the upper end the p at which
    P(X ≤ k) = 2.5 % (Clopper & Pearson 1934); 0 and 1 at the edges."""
    lo, hi = _load().clopper_pearson(k, n)
    want_lo = 0.0 if k == 0 else _solve(lambda p: _tail_ge(k, n, p) - 0.025)
    want_hi = 1.0 if k == n else _solve(lambda p: 0.025 - (1 - _tail_ge(k + 1, n, p)))
    assert lo == pytest.approx(want_lo, abs=1e-9)
    assert hi == pytest.approx(want_hi, abs=1e-9)
    if k == 0:   # the rule of three's exact form
        assert hi == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)


def _run(ds, seed, lin, gmm, sent, conv=None):
    return {"dataset": ds, "seed": seed, "lam": 7.0, "seconds": 1.0, "largest": "500",
            "linear": {"100": lin - 1, "500": lin}, "converged": {"100": 0.0, "500": conv or lin},
            "gmm": gmm, "gmm_rules": {"top": gmm, "majority": gmm + 1, "hungarian": 50.0},
            "gmm_inits": [gmm, gmm, gmm], "gmm_best_of_inits": gmm,
            "eta2": {"sentiment": sent, "tense": 0.2, "subject": 0.3, "topic": 0.0},
            "ae": {"linear": {"500": 90.0}, "converged": {"500": 91.0}, "gmm": 60.0}}


def test_render_counts_each_part_of_the_check(tmp_path):
    """Passing is ≥ (90.0 linear at the largest label count, 80.0 GMM); `both` needs both on the same seed."""
    runs = [_run("a", 1, 90.0, 80.0, 0.3), _run("a", 2, 89.9, 95.0, 0.2), _run("a", 3, 95.0, 79.9, 0.1),
            _run("a", 4, 92.0, 85.0, 0.25), _run("b", 1, 50.0, 50.0, 0.0)]
    path = tmp_path / "classify_seeds.json"
    path.write_text(json.dumps({"runs": runs, "processor": "x", "cpus": 2, "jobs": 1, "lam": 7.0, "command": "c"}))
    cs = _load()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in cs.render(str(path)).splitlines()
            if line.startswith(("| a ", "| b ")) and line.count("|") == 11}   # the summary table's rows
    lo, hi = cs.clopper_pearson(3, 4)
    assert rows["a"][:4] == ["4", f"3/4 ({100 * lo:.0f}-{100 * hi:.0f} %)", f"3/4 ({100 * lo:.0f}-{100 * hi:.0f} %)",
                             f"2/4 ({100 * cs.clopper_pearson(2, 4)[0]:.0f}-{100 * cs.clopper_pearson(2, 4)[1]:.0f} %)"]
    assert rows["a"][4] == f"{(90 + 89.9 + 95 + 92) / 4:.1f} (89.9-95.0)"
    # the correlation of the GMM with the sentiment's η², by hand
    g, s = [80.0, 95.0, 79.9, 85.0], [0.3, 0.2, 0.1, 0.25]
    mg, ms = sum(g) / 4, sum(s) / 4
    r = sum((a - mg) * (b - ms) for a, b in zip(g, s)) / math.sqrt(sum((a - mg) ** 2 for a in g)
                                                                     * sum((b - ms) ** 2 for b in s))
    assert rows["a"][8] == f"{r:+.2f}"
    assert rows["b"][1] == "0/1 (0-98 %)"
