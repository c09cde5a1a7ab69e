"""The unsupervised (GMM) classification probe against the authors' scripts/unsupervised_cluster.py, on the same
features and labels (docs/fidelity.md, "Classification probes").

    python bench/fidelity_probes.py --authors LI_DIR [--seeds 0 1 2] [--json out.json]

Features: a fixed synthetic two-class set (8-d, two overlapping Gaussian classes whose means differ along one
axis; 2,000 training, 500 validation, 500 test vectors, numpy seed 0), written as their script reads it
(``train.vec``/``val.vec``/``test.vec``, tab-separated, 17 significant digits; ``*.label``). Their script runs
from the checkout as written (``runpy``), with two things set around it: ``numpy.int = int`` (their
``np.loadtxt(..., dtype=np.int)`` needs the alias numpy removed in 1.24: as written it stops with an
AttributeError on numpy ≥ 1.24) and the global numpy generator seeded (their GaussianMixture has no
``random_state``, so it draws from that generator; textvae's ``fit_gmm`` gets the same seed as ``random_state``,
which gives the same k-means initialisation). Both component→label rules of theirs: the default (the label of
the top-responsibility validation example, 10 components) and ``--one2one`` (Hungarian, 2 components).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import emit_json  # noqa: E402


def features(folder: Path) -> dict:
    rng = np.random.RandomState(0)
    out = {}
    for split, n in (("train", 2000), ("val", 500), ("test", 500)):
        y = rng.randint(0, 2, n)
        x = rng.randn(n, 8)
        x[:, 0] += 1.5 * y
        np.savetxt(folder / f"{split}.vec", x, delimiter="\t", fmt="%.17g")
        np.savetxt(folder / f"{split}.label", y, fmt="%d")
        out[split] = (np.loadtxt(folder / f"{split}.vec", delimiter="\t"), y)
    return out


def theirs(script: Path, folder: Path, seed: int, one2one: bool) -> dict:
    argv = [str(script), "--exp_dir", str(folder)] + (["--one2one", "--num", "2"] if one2one else [])
    saved = sys.argv
    np.int = int                                     # removed from numpy in 1.24; their script uses it
    np.random.seed(seed)
    buf = io.StringIO()
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(buf):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
        del np.int
    text = buf.getvalue()
    acc = {k: 100 * float(re.search(rf"{k} acc ([0-9.]+)", text).group(1)) for k in ("validation", "test")}
    return acc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--json")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from textvae.probing.classifiers import gmm_accuracy
    script = Path(a.authors) / "scripts" / "unsupervised_cluster.py"
    folder = Path(tempfile.mkdtemp(prefix="fidelity_probe_"))
    f = features(folder)
    (tx, _), (vx, vy), (sx, sy) = f["train"], f["val"], f["test"]
    rows = []
    for seed in a.seeds:
        ours = gmm_accuracy(tx, vx, vy, sx, sy, n_components=10, rule="top", seed=seed)["accuracies"]
        rows.append({"seed": seed, "top": {"authors": theirs(script, folder, seed, False)["test"], "textvae": ours["top"]},
                     "one2one": {"authors": theirs(script, folder, seed, True)["test"], "textvae": ours["hungarian"]}})
        print(rows[-1], file=sys.stderr, flush=True)
    out = {"rows": rows, "identical": all(r[k]["authors"] == r[k]["textvae"] for r in rows for k in ("top", "one2one"))}
    return emit_json(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
