"""Plant known bugs in a scratch copy of src/ one at a time and see which tests turn red (docs/fidelity.md).

    python bench/fidelity_plant.py [--tests tests/test_fidelity.py ...] [--bugs fb_clamp ...] [--json out.json]

Each bug is a one-line change of textvae's source, applied to a copy of src/ in a temporary folder (never to
this checkout); the tests run with that copy first on PYTHONPATH. A bug whose line is not found stops the run
(the source moved: update BUGS).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (file under src/textvae, exact old text, new text, what it does)
BUGS = {
    "fb_clamp": ("modeling/objectives.py", "threshold = lam / kld.size(1)", "threshold = lam",
                 "the FB clamp at λ instead of λ/nz"),
    "fbp_per_dim": ("modeling/objectives.py", "kl_term = kl * (kl > lam).to(kl.dtype)",
                    "kl_term = (kld * (kld > lam).to(kld.dtype)).sum(1)", "FBP's mask per dimension"),
    "iwae_log_k": ("modeling/objectives.py", "- math.log(iwae_k)", "",
                   "IWAE without −log K (both the SPEC form and the authors' compatible form)"),
    "iwae_log_k_default": ("modeling/objectives.py", "loss = -(torch.logsumexp(log_w, dim=1) - math.log(iwae_k))",
                           "loss = -torch.logsumexp(log_w, dim=1)", "IWAE without −log K in textvae's own (SPEC) form only"),
    "beta_unclamped": ("modeling/objectives.py", "return min(1.0, self.kl_start + step * self.rate)",
                       "return self.kl_start + step * self.rate", "β not clamped at 1"),
    "decay_no_reload": ("training/trainer.py", "                    self.model.load_state_dict(self.best_model)\n", "",
                        "lr decay without reloading the best checkpoint"),
    "clip_2x": ("training/trainer.py", "torch.nn.utils.clip_grad_norm_(clip_params, self.cfg.clip_grad)",
                "torch.nn.utils.clip_grad_norm_(clip_params, 2 * self.cfg.clip_grad)", "clipping at 2× clip_grad"),
    "val_train_mode": ("training/trainer.py", "        self.model.eval()\n        m = self.method\n",
                       "        self.model.train()\n        m = self.method\n", "validation in train mode (dropout on)"),
    "no_decoder_reset": ("training/trainer.py", "            self.model.reset_decoder()", "            pass",
                         "the decoder reset skipped"),
    "linear_no_reload": ("probing/classifiers.py", "                clf.load_state_dict(best_state)\n", "",
                         "the linear probe's lr decay without reloading the best classifier"),
    "linear_patience_5": ("probing/classifiers.py", "max_epochs: int = 100, patience: int = 2,",
                          "max_epochs: int = 100, patience: int = 5,",
                          "the linear probe decays after 5 rises (the VAE's patience) instead of 2"),
}


def plant(src: Path, name: str) -> None:
    rel, old, new, _ = BUGS[name]
    p = src / "textvae" / rel
    text = p.read_text()
    if old not in text:
        raise SystemExit(f"{name}: {old!r} not found in {p}: update BUGS")
    p.write_text(text.replace(old, new))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tests", nargs="+", default=["tests/test_fidelity.py"])
    ap.add_argument("--bugs", nargs="+", choices=list(BUGS), default=list(BUGS))
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {}
    for name in a.bugs:
        work = Path(tempfile.mkdtemp(prefix=f"plant_{name}_"))
        src = work / "src"
        shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        plant(src, name)
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "OMP_NUM_THREADS": "1"}
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *a.tests],
                              cwd=REPO, env=env, capture_output=True, text=True)
        failed = sorted(set(re.findall(r"^FAILED (\S+)", proc.stdout, re.M)))
        summary = (proc.stdout.strip().splitlines() or [""])[-1]
        out[name] = {"what": BUGS[name][3], "rc": proc.returncode, "failed": failed, "summary": summary,
                     "seconds": round(time.time() - t0, 1)}
        print(f"{name}: {summary} ({out[name]['seconds']} s)", file=sys.stderr, flush=True)
        for f in failed:
            print(f"    {f}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0 if all(r["failed"] for r in out.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
