"""The prepared GPU check (issue 13): one call on a lent GPU machine measures what users will run.

    bash bench/gpu_check.sh [--out DIR] [--budget 540]     # on the GPU machine (writes into $OUT by default)
    bash bench/gpu_check.sh --cpu-smoke --out DIR           # every step at toy sizes on the CPU (< 3 minutes)
    bash bench/gpu_check.sh --stage-data                    # copy ../shared/data/ptb into the carried folder

Steps, each in its own process group with its own time box inside the overall budget (a hung step is killed and
the next one runs): env, data (PTB prepared with ``textvae data prepare``), cuda_tests (tests/test_cuda.py),
train (bench/bench_train.py per method, fp32 and bf16), iw (bench/bench_evaluate.py at K = 1000), packing
(1, 4, 8, 16 concurrent PTB training jobs through ``python -m textvae.workflow.gpu_slots``), tables (the PTB rows of
Tables 1-3 from params.yaml, the AE first and then all the others at once, for the hours of a full
reproduction). Results: OUT/gpu_check.json, OUT/gpu_check.md (ready for BENCHMARKS.md) and OUT/gpu_check.log;
both result files are rewritten after every step, so a killed run still leaves what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gpu_check_report import render  # noqa: E402
from textvae.core.rundir import atomic_write_text  # noqa: E402

CARRIED = REPO / "data" / "gpu_check" / "ptb"      # ignored by git; named in the device call's `carry`
SHARED = REPO.parent / "shared" / "data" / "ptb"
PY = sys.executable

# (full, smoke) settings of each step; budgets in seconds
FULL = dict(budget=540, env=20, data=30, tests=120, train=110, train_seconds=3.0, warmup=5, iw=75, iw_sentences=300,
            iw_k=1000, packing=160, pack_levels=[1, 4, 8, 16], pack_seconds=6.0, tables_max_train=6400,
            tables_epochs=2, sizes=None, slice=None)
SMOKE = dict(budget=170, env=20, data=20, tests=60, train=40, train_seconds=0.3, warmup=1, iw=30, iw_sentences=2,
             iw_k=20, packing=50, pack_levels=[1, 2], pack_seconds=1.0, tables_max_train=96, tables_epochs=1,
             sizes=(32, 32, 16), slice=(600, 60, 60))


class Check:
    def __init__(self, out: Path, work: Path, cfg: dict, smoke: bool):
        self.out, self.work, self.cfg, self.smoke = out, work, cfg, smoke
        self.start = time.monotonic()
        self.deadline = self.start + cfg["budget"]
        self.result = {"mode": "cpu-smoke" if smoke else "gpu", "budget_s": cfg["budget"], "steps": {},
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.log = open(out / "gpu_check.log", "a", encoding="utf-8")
        self.data = work / "data" / "ptb"
        self.device = "cpu" if smoke else "auto"
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                        PYTHONUNBUFFERED="1")
        if smoke:
            # the CPU even where a GPU exists; one thread per process (a loaded 2-core machine stalls on more)
            self.env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")

    # ------------------------------------------------------------------ plumbing
    def threads(self, jobs: int) -> str:
        """CPU threads of each of ``jobs`` concurrent jobs: a fair share of the cores (more only contend)."""
        return "1" if self.smoke else str(max(1, (os.cpu_count() or 1) // max(1, jobs)))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def spawn(self, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        self.log.write(f"$ {' '.join(map(str, argv))}\n")
        self.log.flush()
        return subprocess.Popen(list(map(str, argv)), stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd or REPO,
                                env=env or self.env, start_new_session=True)

    @staticmethod
    def stop(procs: list[subprocess.Popen]) -> None:
        """SIGTERM each still-running process group, SIGKILL what is left 3 s later."""
        live = [p for p in procs if p.poll() is None]
        for p in live:
            _signal_group(p, signal.SIGTERM)
        end = time.monotonic() + 3
        for p in live:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()

    def wait_all(self, procs: list[subprocess.Popen], until: float) -> bool:
        """Wait for every process until the monotonic time ``until``; False (and all stopped) if it passed."""
        for p in procs:
            try:
                p.wait(timeout=max(0.0, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stop(procs)
                return False
        return True

    def run(self, argv: list[str], box: float, **kw) -> str:
        p = self.spawn(argv, **kw)
        if not self.wait_all([p], time.monotonic() + box):
            return "timeout"
        return "ok" if p.returncode == 0 else f"exit {p.returncode}"

    def step(self, name: str, box: float, fn, minimum: float = 5.0) -> None:
        box = min(box, self.left() - 3)
        if box < minimum:
            self.result["steps"][name] = {"status": "skipped: out of time", "seconds": 0}
            self.say(f"{name}: skipped (out of time)")
            self.save()
            return
        self.say(f"{name}: start (time box {box:.0f} s)")
        t0 = time.monotonic()
        rec = {"status": "running", "time_box_s": round(box)}
        self.result["steps"][name] = rec
        try:
            rec.update(fn(time.monotonic() + box) or {})
            if rec["status"] == "running":
                rec["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - one broken step must not stop the others
            rec["status"] = f"error: {type(exc).__name__}: {exc}"
        rec["seconds"] = round(time.monotonic() - t0, 1)
        self.say(f"{name}: {rec['status']} in {rec['seconds']} s")
        self.save()

    def save(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.start, 1)
        atomic_write_text(json.dumps(self.result, indent=1) + "\n", self.out / "gpu_check.json")
        atomic_write_text(render(self.result), self.out / "gpu_check.md")

    # ------------------------------------------------------------------ steps
    def s_env(self, until: float) -> dict:
        probe = self.work / "env.json"
        code = ("import json, os, sys, platform, torch; c = torch.cuda.is_available(); json.dump({'python': "
                "sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': c,"
                " 'gpu': torch.cuda.get_device_name(0) if c else None, 'capability': list("
                "torch.cuda.get_device_capability(0)) if c else None, 'gpu_mib': torch.cuda.get_device_properties(0)"
                ".total_memory // 2**20 if c else None, 'cores': os.cpu_count(), 'machine': platform.machine(), "
                "'tf32_matmul': torch.backends.cuda.matmul.allow_tf32, 'tf32_cudnn': torch.backends.cudnn.allow_tf32"
                "}, open(sys.argv[1], 'w'))")
        status = self.run([PY, "-c", code, probe], until - time.monotonic())
        info = json.loads(probe.read_text()) if probe.exists() else {}
        info["nvidia_smi"] = _smi(["--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                   "--format=csv,noheader"])
        info["commit"] = _git("rev-parse", "HEAD")
        info["dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
        staged = CARRIED.parent / "COMMIT"
        if not info["commit"] and staged.exists():       # the device's copy has no .git: --stage-data wrote it
            info["commit"], dirty = (staged.read_text().split() + ["", ""])[:2]
            info["dirty"] = dirty == "dirty"
        for mod in ("pytest", "snakemake", "dvc"):
            info[f"has_{mod}"] = subprocess.run([PY, "-c", f"import {mod}"], capture_output=True).returncode == 0
        self.result["info"] = info
        return {"status": status}

    def s_data(self, until: float) -> dict:
        src = find_ptb()
        if src is None and not self.smoke:
            raise FileNotFoundError(f"no PTB files in {CARRIED} or {SHARED} (run bench/gpu_check.sh --stage-data "
                                    "and carry data/gpu_check)")
        if src is None:
            argv = [PY, "-m", "textvae", "data", "prepare", "synthetic", "--examples",
                    ",".join(map(str, self.cfg["slice"])), "--out", self.data]
        else:
            argv = [PY, "-m", "textvae", "data", "prepare", "ptb", "--source", src, "--out", self.data]
        status = self.run(argv, until - time.monotonic())
        if status == "ok" and self.smoke and src is not None:
            for split, n in zip(("train", "valid", "test"), self.cfg["slice"]):
                path = self.data / f"{split}.txt"
                path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))
        self.result["data"] = {"source": str(src) if src else "synthetic (no PTB found)", "dir": str(self.data),
                               "train_sentences": _lines(self.data / "train.txt")}
        return {"status": status}

    def s_tests(self, until: float) -> dict:
        if not self.result.get("info", {}).get("has_pytest"):
            return {"status": "skipped: pytest is not installed (BENCHMARKS.md: carry it as a wheel)"}
        xml = self.work / "cuda_tests.xml"
        status = self.run([PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_cuda.py",
                           f"--junitxml={xml}"], until - time.monotonic())
        return {"status": status if status != "exit 5" else "ok", "tests": _junit(xml)}

    def bench_train_argv(self, json_out: Path, methods: list[str], precisions: list[str], seconds: float,
                         barrier: Path | None = None) -> list:
        argv = [PY, REPO / "bench" / "bench_train.py", "--data", self.data, "--device", self.device, "--seconds", seconds,
                "--warmup", self.cfg["warmup"], "--rows-only", "--json", json_out, "--methods", *methods,
                "--precision", *precisions]
        if barrier:
            argv += ["--barrier", barrier]
        if self.cfg["sizes"]:
            argv += ["--sizes", ",".join(map(str, self.cfg["sizes"])), "--aggressive-max-steps", "3"]
        return argv

    def s_train(self, until: float) -> dict:
        out = self.work / "train.json"
        argv = self.bench_train_argv(out, ["ae", "vae", "ours", "iwae", "lm", "aggressive"], ["fp32", "bf16"],
                                     self.cfg["train_seconds"])
        status = self.run(argv, until - time.monotonic())
        if out.exists():
            return {"status": status, **json.loads(out.read_text())}
        return {"status": status, "rows": _json_lines(self.out / "gpu_check.log")}   # what it printed before

    def s_iw(self, until: float) -> dict:
        out = self.work / "iw.json"
        device = "cpu" if self.smoke else "cuda"
        argv = [PY, REPO / "bench" / "bench_evaluate.py", "--data", self.data, "--device", device, "--batched",
                "--sentences", self.cfg["iw_sentences"], "--baseline-sentences", 1 if self.smoke else 2,
                "-K", self.cfg["iw_k"], "--repeat", 1 if self.smoke else 2, "--json", out]
        status = self.run(argv, until - time.monotonic())
        return {"status": status, **(json.loads(out.read_text()) if out.exists() else {})}

    def s_packing(self, until: float) -> dict:
        levels = []
        for c in self.cfg["pack_levels"]:
            if time.monotonic() + 10 > until:
                levels.append({"jobs": c, "status": "skipped: out of time"})
                continue
            levels.append(self.pack_level(c, until))
            self.result["steps"]["packing"]["levels"] = levels
            self.save()
        return {"levels": levels}

    def pack_level(self, c: int, until: float) -> dict:
        d = self.work / f"pack{c}"
        barrier = d / "barrier"
        barrier.mkdir(parents=True)
        env = dict(self.env, TEXTVAE_GPU_LOCK_DIR=str(d / "locks"), OMP_NUM_THREADS=self.threads(c))
        if self.smoke:
            env["TEXTVAE_FAKE_GPUS"] = "1"      # the slot pool with one pretend device; the jobs run on the CPU
        gpu_run = [PY, "-m", "textvae.workflow.gpu_slots", "--slots-per-device", c, "--"]
        procs = [self.spawn(gpu_run + self.bench_train_argv(d / f"job{i}.json", ["vae"], ["fp32"],
                                                            self.cfg["pack_seconds"], barrier), env=env)
                 for i in range(c)]
        t0 = time.monotonic()
        while len(list(barrier.glob("ready.*"))) < c and time.monotonic() < until - 2 * self.cfg["pack_seconds"] \
                and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        ready = len(list(barrier.glob("ready.*")))
        (barrier / "go").touch()
        startup = time.monotonic() - t0
        with Sampler() as smi:
            finished = self.wait_all(procs, until)
        jobs = [json.loads(p.read_text())["rows"][0] for p in sorted(d.glob("job*.json"))]
        rec = {"jobs": c, "ready": ready, "completed": len(jobs), "startup_s": round(startup, 1),
               "status": "ok" if finished and len(jobs) == c else "incomplete", "gpu": smi.summary(), "rows": jobs}
        if jobs:
            lo = min(j["window"][0] for j in jobs)
            hi = max(j["window"][1] for j in jobs)
            rec["aggregate_sentences_per_s"] = round(sum(j["sentences"] for j in jobs) / (hi - lo), 1)
            rec["per_job_sentences_per_s"] = round(sum(j["sentences_per_s"] for j in jobs) / len(jobs), 1)
            peaks = [j["peak_gpu_mib"] for j in jobs if "peak_gpu_mib" in j]
            rec["peak_reserved_mib_per_job"] = max(peaks) if peaks else None
        self.say(f"packing {c}: {rec.get('aggregate_sentences_per_s')} sentences/s aggregate, {rec['status']}")
        return rec

    def s_tables(self, until: float) -> dict:
        from textvae.plan.pipeline import Plan
        plan = Plan.load(REPO / "params.yaml", schema=None)
        exp = plan.experiment("paper")
        runs = []
        for table in ("table1", "table2", "table3"):
            for sec in plan.sections(exp, table):
                if sec.dataset == "ptb":
                    runs += [r for r in plan.runs_of(exp, "ptb", sec.rows) if r not in runs]
        first = [r for r in runs if r.method == "ae"]
        rest = [r for r in runs if r.method != "ae"]
        if self.smoke:   # one run of each kind: plain, and one that starts from the AE
            rest = [next(r for r in rest if r.method not in ("pretrain", "pretrain_anneal", "ours")),
                    next(r for r in rest if r.method in ("pretrain", "pretrain_anneal", "ours"))]
        (self.work / "params.yaml").write_text((REPO / "params.yaml").read_text())
        (self.work / "data").mkdir(exist_ok=True)
        phases = []
        for label, group in (("ae alone", first), ("all other rows at once", rest)):
            if time.monotonic() + 10 > until:
                phases.append({"phase": label, "status": "skipped: out of time"})
                continue
            phases.append(self.table_phase(label, plan, group, until))
            self.result["steps"]["tables"]["phases"] = phases
            self.save()
        return {"runs": [r.run_id for r in first + rest], "phases": phases,
                "max_epochs": plan.section("training", "ptb").get("max_epochs")}

    def table_phase(self, label: str, plan, group, until: float) -> dict:
        n = self.cfg["tables_max_train"]
        extra = ["--epochs", self.cfg["tables_epochs"], "--max-valid", max(32, n // 10), "--device", self.device]
        if self.cfg["sizes"]:
            e, h, nz = self.cfg["sizes"]
            extra += ["--enc-emb", e, "--dec-emb", e, "--enc-hidden", h, "--dec-hidden", h, "--nz", nz]
        env = dict(self.env, TEXTVAE_GPU_LOCK_DIR=str(self.work / "locks-tables"), 
                   OMP_NUM_THREADS=self.threads(len(group)))
        if self.smoke:
            env["TEXTVAE_FAKE_GPUS"] = "1"
        gpu_run = [PY, "-m", "textvae.workflow.gpu_slots", "--slots-per-device", max(1, len(group)), "--"]
        procs = []
        for run in group:
            argv = plan.train_job(run).argv
            # aggressive training costs ~60 passes per batch: a tenth of the sentences keeps its epoch in the box
            m = n // 10 if run.method == "aggressive" else n
            procs.append(self.spawn(gpu_run + [PY, "-m", "textvae", *argv[1:], "--max-train", m, *extra], env=env,
                                    cwd=self.work))
        t0 = time.monotonic()
        with Sampler() as smi:
            finished = self.wait_all(procs, until)
        wall = time.monotonic() - t0
        rows = []
        for run, p in zip(group, procs):
            metrics = self.work / run.dir / "metrics.jsonl"
            epochs = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
            cfg_path = self.work / run.dir / "config.json"
            conf = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
            row = {"run": run.run_id, "exit": p.returncode, "epochs": len(epochs),
                   "train_examples": conf.get("train_examples"), "vocab": conf.get("vocab_size"),
                   "device": conf.get("device_used")}
            if epochs:
                row["sentences_per_s"] = epochs[-1]["sentences_per_s"]
                row["epoch_train_s"] = epochs[-1]["seconds"]
            rows.append(row)
        return {"phase": label, "status": "ok" if finished else "timeout", "wall_s": round(wall, 1),
                "gpu": smi.summary(), "rows": rows}


# ---------------------------------------------------------------------- helpers
def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _smi(args: list[str]) -> list[str] | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()] if res.returncode == 0 else None


class Sampler:
    """Samples the GPU's used memory and utilisation (nvidia-smi) every half second while active."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            lines = _smi(["--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"])
            if not lines:
                return
            try:
                mem, util = (float(v) for v in lines[0].split(",")[:2])
            except ValueError:
                return
            self.samples.append((mem, util))
            self._stop.wait(0.5)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"max_used_mib": max(m for m, _ in self.samples),
                "mean_util_pct": round(sum(u for _, u in self.samples) / len(self.samples), 1),
                "samples": len(self.samples)}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _lines(path: Path) -> int | None:
    return sum(1 for _ in open(path)) if path.exists() else None


def _json_lines(path: Path) -> list[dict]:
    """The JSON rows a killed bench_train printed to the log before it was stopped."""
    out = []
    for ln in path.read_text().splitlines():
        if ln.startswith('{"method"'):
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
    return out


def _junit(xml: Path) -> dict | None:
    if not xml.exists():
        return None
    import xml.etree.ElementTree as ET
    root = ET.parse(xml).getroot()
    cases = []
    for tc in root.iter("testcase"):
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome, detail = tag, (el.get("message") or "")[:300]
        cases.append({"name": tc.get("name"), "outcome": outcome, "seconds": float(tc.get("time") or 0),
                      "detail": detail})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
    return {"counts": counts, "cases": cases}


def find_ptb(explicit: str | None = None) -> Path | None:
    env = os.environ.get("TEXTVAE_SHARED_DATA")
    for d in ([Path(explicit)] if explicit else []) + [CARRIED] + ([Path(env) / "ptb"] if env else []) + [SHARED]:
        if (d / "ptb.train.txt").is_file():
            return d
    return None


def stage_data() -> int:
    src = SHARED if (SHARED / "ptb.train.txt").is_file() else None
    if src is None:
        print(f"gpu_check: no PTB files at {SHARED}", file=sys.stderr)
        return 1
    CARRIED.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        shutil.copyfile(src / f"ptb.{split}.txt", CARRIED / f"ptb.{split}.txt")
    dirty = "dirty" if _git("status", "--porcelain", "--untracked-files=no") else "clean"
    (CARRIED.parent / "COMMIT").write_text(f"{_git('rev-parse', 'HEAD')} {dirty}\n")
    print(f"copied {src} to {CARRIED.relative_to(REPO)} and recorded the commit (ignored by git; name "
          "data/gpu_check in `carry`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default $OUT)")
    ap.add_argument("--cpu-smoke", action="store_true", help="every step at toy sizes on the CPU")
    ap.add_argument("--budget", type=float, help="seconds for the whole check (default 540; smoke 170)")
    ap.add_argument("--work", help="scratch folder (default a new temporary one)")
    ap.add_argument("--steps", help="comma-separated subset of: env,data,cuda_tests,train,iw,packing,tables")
    ap.add_argument("--stage-data", action="store_true", help="copy ../shared/data/ptb into data/gpu_check/ptb")
    args = ap.parse_args(argv)
    if args.stage_data:
        return stage_data()
    if not args.out:
        ap.error("give --out DIR (or set OUT)")
    cfg = dict(SMOKE if args.cpu_smoke else FULL)
    if args.budget:
        cfg["budget"] = args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    chk = Check(out, work, cfg, args.cpu_smoke)
    steps = [("env", cfg["env"], chk.s_env), ("data", cfg["data"], chk.s_data),
             ("cuda_tests", cfg["tests"], chk.s_tests), ("train", cfg["train"], chk.s_train),
             ("iw", cfg["iw"], chk.s_iw), ("packing", cfg["packing"], chk.s_packing),
             ("tables", cfg["budget"], chk.s_tables)]
    wanted = set(args.steps.split(",")) if args.steps else None
    for name, box, fn in steps:
        if wanted is None or name in wanted or name in ("env", "data"):
            chk.step(name, box, fn)
    chk.result["finished"] = True
    chk.save()
    chk.say(f"done: {out / 'gpu_check.md'}")
    print("\n" + (out / "gpu_check.md").read_text(), flush=True)   # the device reply carries the output's tail
    failed = [n for n, s in chk.result["steps"].items() if not str(s["status"]).startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
