"""Issue 10: nothing lost, nothing silent. Interrupted trainings resume (also under Snakemake), every bad input
is one line naming the file, line, key or option, exits non-zero, and leaves nothing half-written or deleted.
docs/reliability.md lists every case here with the line the user sees."""
from __future__ import annotations

import errno
import http.server
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from textvae.plan import pipeline
from textvae.modeling.checkpoint import atomic_save, load_checkpoint, model_payload
from textvae.cli.dispatch import main
from textvae.core.errors import ConfigError, DataError, TrainingError
from textvae.corpora.fetch import download
from textvae.corpora.prepare import prepare
from textvae.training.trainer import TrainConfig, Trainer

from test_pipeline import copy_pipeline, edit_params, needs_snakemake, snakemake

REPO = Path(__file__).resolve().parents[1]
# the line a YAML error is reported at when `training.max_epochs: 100` is broken (the line after it)
BAD_LINE = (REPO / "params.yaml").read_text().splitlines().index("  max_epochs: 100") + 2

TINY = ["--enc-emb", "8", "--dec-emb", "8", "--enc-hidden", "8", "--dec-hidden", "8", "--nz", "4", "--no-progress"]
SIZES = dict(enc_emb=8, dec_emb=8, enc_hidden=8, dec_hidden=8, nz=4)
TIMING = ("seconds", "sentences_per_s")


class Evil:
    """A pickle that would run a shell command when loaded without weights_only."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/textvae-evil-ran",))


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time (but a run's own train.log, which may
    record the attempt)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "train.log"}


def cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


def records(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------
# fixtures: a tiny corpus, a trained checkpoint, and a folder of bad inputs
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "syn"
    prepare("synthetic", out, examples=(200, 40, 40), log=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def ckpt(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ae")
    assert main(["train", "--data", str(corpus), "--method", "ae", "--out", str(run), "--epochs", "1", *TINY]) == 0
    return run / "best.pt"


@pytest.fixture(scope="module")
def bad(corpus, ckpt, tmp_path_factory) -> dict:
    """Paths for the bad-input cases, all under one root whose files must not change."""
    root = tmp_path_factory.mktemp("bad")
    good = load_checkpoint(ckpt)
    torch.save({"format": "textvae-checkpoint-v1", "evil": Evil()}, root / "evil.pt")
    atomic_save({k: v for k, v in good.items() if k != "model_config"}, root / "no_model_config.pt")
    atomic_save({**good, "model": None}, root / "no_model.pt")   # what `--epochs 0` used to write
    (root / "garbage.pt").write_bytes(random.Random(0).randbytes(300))   # the same bytes, the same message
    shutil.copy(ckpt, root / "best.pt")
    vocab = list(good["vocab"])
    atomic_save({**good, "vocab": vocab[:5] + [vocab[6], vocab[5]] + vocab[7:]}, root / "vocab_swapped.pt")
    atomic_save({**good, "vocab": vocab + ["extra"]}, root / "vocab_longer.pt")
    for name, relabel in (("one_class", lambda i, label: "1"),
                          ("huge_label", lambda i, label: "999999999999" if i == 2 else label)):
        (root / name).mkdir()
        for split in ("train", "valid", "test"):
            lines = (corpus / f"{split}.txt").read_text().splitlines()
            (root / name / f"{split}.txt").write_text("".join(
                relabel(i, ln.split("\t", 1)[0]) + "\t" + ln.split("\t", 1)[1] + "\n" for i, ln in enumerate(lines)))
    (root / "plain.txt").write_text("a plain file\n")
    for name, train in (("empty", b""), ("undecodable", b"the cat\nsat \xff\xfe here\n"),
                        ("no_tab", b"1\tgood line\n0\tanother\nno tab here\n")):
        (root / name).mkdir()
        (root / name / "train.txt").write_bytes(train)
        (root / name / "valid.txt").write_bytes(b"a b c\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "model.pt").write_bytes(b"not ours")
    (root / "bad_last").mkdir()
    (root / "bad_last" / "last.pt").write_bytes(b"truncated")
    text = (REPO / "params.yaml").read_text()
    variants = {
        "syntax": text.replace("  max_epochs: 100\n", "  max_epochs: [100\n", 1),
        "duplicate": text.replace("  max_epochs: 100\n", "  max_epochs: 100\n  max_epochs: 3\n", 1),
        "ten": text.replace("  max_epochs: 100\n", "  max_epochs: ten\n", 1),
        "lr": text.replace("  max_epochs: 100\n", "  max_epochs: 100\n  lr: -1\n", 1),
        "fbp_mode": text.replace("fbp_mode: per_example", "fbp_mode: bogus", 1),
        "nz": text.replace("enc_hidden: 64, dec_hidden: 64, nz: 32}", "enc_hidden: 64, dec_hidden: 64, nz: 0}", 1),
        "ours0": text.replace("ours@*", "ours@0", 1),
        "duplicate_row": text.replace("rows: [ae, vae, anneal, cyclic, aggressive, fbp@7, fbp@3, fb@7, fb@3]",
                                      "rows: [ae, vae, anneal, cyclic, aggressive, fbp@7, fbp@3, fb@7, fb@3, vae]", 1),
    }
    for name, body in variants.items():
        assert body != text, name
        (root / f"params_{name}.yaml").write_text(body)
    return {"root": root, "data": corpus, "ckpt": ckpt, "runs": root / "runs"}


# ----------------------------------------------------------------------------------------------------------
# Every bad input: one line naming the option, key, file or line; exit 1; nothing written, nothing deleted
# (items 3, 4, 8, 9, 10 of the issue). Each id is a row of docs/reliability.md.
# ----------------------------------------------------------------------------------------------------------

DOC = REPO / "docs" / "reliability.md"


def documented_cases() -> list[tuple[str, str, str]]:
    """The rows of docs/reliability.md's "Bad inputs" table: (ID, command, the line the user sees), as written
    there (temporary paths shortened to `…`, the test corpus shown as `data/synthetic`)."""
    text = DOC.read_text().split("## Bad inputs", 1)[1]
    cases = []
    for line in text.splitlines():
        found = re.match(r"^\| `([\w.-]+)` \| `(.+?)` \| (`+) ?(.+?) ?\3 \|$", line)
        if found:
            cases.append((found.group(1), found.group(2), found.group(4)))
    return cases


CASES = documented_cases()


def _expand(text: str, bad: dict) -> str:
    return text.replace("…", str(bad["root"])).replace("data/synthetic", str(bad["data"]))


def _shorten(line: str, bad: dict) -> str:
    """The line as the table shows it: short paths, and `L` for the line of a params file (it moves whenever
    params.yaml grows above it)."""
    line = line.replace(str(bad["root"]), "…").replace(str(bad["data"]), "data/synthetic").replace(
        str(REPO) + "/", "")
    line = line.replace(f"on line {BAD_LINE - 1})", "on line L-1)")
    return re.sub(r"\.yaml:\d+:", ".yaml:L:", line)


@pytest.mark.parametrize("case_id, command, shown", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case_id, command, shown, bad, capsys, monkeypatch):
    """Each documented command, run as written (from the repository root, `…` = the test's folder): exit 1,
    exactly the documented line on stderr, and no file under the test's folder written, changed or deleted."""
    monkeypatch.setenv("TEXTVAE_FAKE_GPUS", "1")   # gpu-run takes a slot (no GPU here)
    monkeypatch.setenv("TEXTVAE_GPU_LOCK_DIR", str(bad["root"] / "runs" / "locks"))
    monkeypatch.chdir(REPO)
    argv = shlex.split(_expand(command, bad))
    assert argv[0] == "textvae", command
    before = files(bad["root"])
    rc, err = cli(argv[1:], capsys)
    if os.environ.get("TEXTVAE_RELIABILITY_DUMP"):   # the lines docs/reliability.md shows
        with open(os.environ["TEXTVAE_RELIABILITY_DUMP"], "a") as fh:
            fh.write(json.dumps([case_id, _shorten(err, bad)], ensure_ascii=False) + "\n")
    assert rc == 1, (rc, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert _shorten(err, bad) == shown
    assert files(bad["root"]) == before, "a bad input must not write, change or delete a file"
    assert not Path("/tmp/textvae-evil-ran").exists()


def test_docs_table_lists_every_case():
    doc = DOC.read_text()
    rows = re.findall(r"^\| `([\w.-]+)` \|", doc, re.M)
    assert len(rows) >= 60 and len(rows) == len(set(rows))
    bad_inputs = re.findall(r"^\| `([\w.-]+)` \|", doc.split("## Bad inputs", 1)[1], re.M)
    assert [c[0] for c in CASES] == bad_inputs, "a row of the Bad inputs table that the test cannot read"
    tests = set(re.findall(r"`(test_\w+)", doc))
    defined = set(re.findall(r"^def (test_\w+)", "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py")),
                             re.M))
    assert tests <= defined, f"docs/reliability.md names tests that do not exist: {sorted(tests - defined)}"


# ----------------------------------------------------------------------------------------------------------
# Item 1: `data prepare --out` never deletes what it did not write
# ----------------------------------------------------------------------------------------------------------

def test_prepare_keeps_foreign_files_and_refuses_plain_file_and_cwd(tmp_path, monkeypatch):
    out = tmp_path / "d"
    out.mkdir()
    (out / "model.pt").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="holds files textvae did not write"):
        prepare("synthetic", out, examples=(30, 10, 10), log=lambda m: None)
    assert (out / "model.pt").read_bytes() == b"weights"
    note = tmp_path / "notes.txt"
    note.write_text("mine\n")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        prepare("synthetic", note, examples=(30, 10, 10), log=lambda m: None)
    assert note.read_text() == "mine\n"
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError, match="is the current folder"):
        prepare("synthetic", ".", examples=(30, 10, 10), log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "notes.txt"]   # no `..XXXX.old/` left
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]


def test_prepare_rewrites_its_own_corpus_and_cleans_a_killed_prepare(tmp_path):
    from textvae.core.rundir import hold_lock

    out = tmp_path / "data" / "syn"
    prepare("synthetic", out, examples=(30, 10, 10), log=lambda m: None)
    stale = [tmp_path / "data" / f".syn.abcd1234.{kind}" for kind in ("tmp", "work", "old")]
    for d in stale:
        d.mkdir()
        (d / "train.txt").write_text("half\n")
    other = tmp_path / "data" / ".synx.abcd1234.tmp"   # another folder's work: not ours to remove
    other.mkdir()
    prepare("synthetic", out, examples=(40, 10, 10), log=lambda m: None)
    assert json.loads((out / "stats.json").read_text())["splits"]["train"]["examples"] == 40
    assert not any(d.exists() for d in stale) and other.exists()
    with hold_lock(tmp_path / "data" / ".syn.lock", "--out"):
        with pytest.raises(ConfigError, match="another textvae process .* is writing there"):
            prepare("synthetic", out, examples=(30, 10, 10), log=lambda m: None)


# ----------------------------------------------------------------------------------------------------------
# Items 2, 5, 6, 8 (training): resume state, metrics, temporary files, one training per folder
# ----------------------------------------------------------------------------------------------------------

def _train(corpus: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(corpus), "--method", "vae", "--out", str(out), "--epochs", "3", *TINY,
                 *extra])


def test_resume_after_a_kill_between_last_pt_and_metrics_keeps_every_row(corpus, tmp_path):
    full = tmp_path / "full"
    assert _train(corpus, full) == 0
    rows = (full / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3
    # the kill: last.pt of the final epoch is on disk, its metrics row is not
    (full / "metrics.jsonl").write_text("".join(r + "\n" for r in rows[:2]))
    (full / "best.pt").unlink()
    assert _train(corpus, full, "--resume") == 0
    assert (full / "metrics.jsonl").read_text().splitlines() == rows


def test_stale_temporaries_of_killed_writes_are_removed_at_next_start(corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".last.pt.tmp4242", run / ".best.pt.tmp4243", run / ".metrics.jsonl.tmp",
             run / ".config.json.tmp77", run / ".vocab.txt.tmp9"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    keep = run / ".eval_test.json.tmp5"   # another command's write: not the trainer's to remove
    keep.write_text("{}")
    assert _train(corpus, run, "--epochs", "1") == 0
    assert not any(p.exists() for p in stale) and keep.exists()
    assert sorted(p.name for p in run.glob(".*tmp*")) == [keep.name]


def test_second_training_on_the_same_out_is_refused(corpus, tmp_path, capsys):
    from textvae.core.rundir import hold_lock
    from textvae.training.trainer import LOCK_FILE

    run = tmp_path / "run"
    with hold_lock(run / LOCK_FILE, f"--out {run}"):   # a training in progress there
        rc, err = cli(["train", "--data", corpus, "--method", "ae", "--out", run, *TINY], capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"--out {run}: another textvae process (pid {os.getpid()}) is writing there" in err
    assert sorted(p.name for p in run.iterdir()) == []   # nothing of the second run


def test_resume_with_other_settings_starts_from_epoch_0_and_says_so(corpus, tmp_path, capsys):
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert _train(corpus, run, "--epochs", "2") == 0
    assert _train(corpus, run, "--epochs", "2", "--lr", "0.25", "--resume") == 0
    assert "is the state of another run (config.lr was None, is 0.25); starting from epoch 0" in \
        capsys.readouterr().err
    assert _train(corpus, ref, "--epochs", "2", "--lr", "0.25") == 0
    assert records(run) == records(ref)


def test_resume_continues_a_finished_run_to_more_epochs_identically(corpus, tmp_path, capsys):
    """--epochs may grow between a run and its resumption (a pipeline's max_epochs raised): same result."""
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert _train(corpus, run, "--epochs", "2") == 0
    assert _train(corpus, run, "--epochs", "4", "--resume") == 0
    assert "resumed from" in capsys.readouterr().err
    assert _train(corpus, ref, "--epochs", "4") == 0
    assert records(run) == records(ref)
    a, b = load_checkpoint(run / "best.pt")["model"], load_checkpoint(ref / "best.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------------------
# Item 9: disk full, Ctrl-C; item 10: NaN at epoch 0, gpu-run's name
# ----------------------------------------------------------------------------------------------------------

def test_disk_full_during_the_metrics_write_is_one_line_and_leaves_no_temporary(corpus, tmp_path, capsys,
                                                                                 monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if "metrics.jsonl" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    rc, err = cli(["train", "--data", corpus, "--method", "vae", "--out", run, "--epochs", "1", *TINY], capsys)
    assert rc == 1 and err.splitlines()[-1] == "textvae train: error: No space left on device", err
    assert len([ln for ln in err.splitlines() if "error" in ln or "Traceback" in ln]) == 1
    assert not list(run.glob(".*tmp*")) and not (run / "metrics.jsonl").exists()


def test_ctrl_c_while_the_cli_starts_is_one_line(monkeypatch, capsys):
    import textvae.cli.dispatch

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(textvae.cli.dispatch, "build_parser", interrupted)
    try:
        rc = main(["train"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped as a traceback")
    assert rc == 130
    assert capsys.readouterr().err == "textvae: interrupted\n"


def test_ctrl_c_while_a_job_waits_for_its_gpu_slot_is_one_line(tmp_path):
    from textvae.workflow.gpu_slots import try_acquire

    env = {**os.environ, "TEXTVAE_FAKE_GPUS": "1", "TEXTVAE_GPU_LOCK_DIR": str(tmp_path / "locks")}
    held = try_acquire(["0"], 1, tmp_path / "locks")   # the only slot is busy: the job waits at its start
    log = tmp_path / "stderr.txt"
    try:
        with open(log, "w") as fh:
            # SIGINT at its default in the child: a suite started in the background (`pytest … &`) would pass
            # on an ignored SIGINT, and Python then never raises KeyboardInterrupt
            proc = subprocess.Popen([sys.executable, "-m", "textvae.workflow.gpu_slots", "--", "true"], env=env, stderr=fh,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 60
        while "waiting" not in log.read_text() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        held.release()
    err = log.read_text()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "textvae gpu-run: interrupted", err


def test_nan_at_epoch_0_names_no_checkpoint(corpus, tmp_path):
    cfg = TrainConfig(method="vae", max_epochs=2, progress=False)
    t = Trainer(cfg, corpus, tmp_path, SIZES)
    real = t.batch_loss
    t.batch_loss = lambda x, beta: tuple(v * float("nan") if i == 0 else v for i, v in enumerate(real(x, beta)))
    with pytest.raises(TrainingError) as info:
        t.fit()
    msg = str(info.value)
    assert "non-finite training loss" in msg and "no checkpoint was written" in msg and "last.pt" not in msg
    assert not (tmp_path / "last.pt").exists()


def test_malicious_checkpoint_message_names_the_refused_call_not_the_unsafe_option(bad):
    with pytest.raises(Exception) as info:
        load_checkpoint(bad["root"] / "evil.pt")
    msg = str(info.value)
    assert "posix.system" in msg and "weights_only" not in msg and "\n" not in msg
    assert not Path("/tmp/textvae-evil-ran").exists()


# ----------------------------------------------------------------------------------------------------------
# Item 7: a real time limit on a slow download
# ----------------------------------------------------------------------------------------------------------

class _Drip(http.server.BaseHTTPRequestHandler):
    """Promises 1 MB and sends one byte every 0.1 s (never idle long enough for the socket timeout)."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        end = time.time() + 30
        try:
            while time.time() < end and not self.server.stop.is_set():
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


def test_slow_download_stops_at_the_total_time_limit(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    srv.daemon_threads, srv.stop = True, threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/slow.tgz"
    start = time.monotonic()
    try:
        with pytest.raises(DataError) as info:
            download(url, tmp_path / "slow.tgz", dataset="ptb", timeout=3, retries=2, backoff=0.1, max_seconds=2,
                     log=lambda m: None)
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
    elapsed = time.monotonic() - start
    assert elapsed < 4, f"the 2 s limit took {elapsed:.1f} s"
    assert "the download took longer than 2 s (--max-time)" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------
# Item 10: a YAML error under Snakemake names the line; item 2: the pipeline's train job resumes
# ----------------------------------------------------------------------------------------------------------

def test_train_job_resumes_and_does_not_declare_its_resume_state():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    job = plan.train_job(pipeline.Run("ptb", "ours", 8.0, 783435))
    assert job.argv[-1] == "--resume"
    assert not any(o.endswith("last.pt") for o in job.outputs)
    # nor do dvc.yaml's training stages (DVC deletes a stage's declared outputs before running it); their
    # command is the plan's (`textvae pipeline dvc-run train RUN_DIR`)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    train = [st.get("do", st) for name, st in stages.items() if name.startswith("train")]
    assert train and all(st["cmd"].startswith("textvae pipeline dvc-run train ") for st in train)
    assert not any(str(o).endswith("last.pt") for st in train for o in st["outs"])


@needs_snakemake
def test_yaml_syntax_error_under_snakemake_names_the_line(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    text = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(text.replace("  max_epochs: 100\n", "  max_epochs: [100\n", 1))
    proc = snakemake(work, "-n", "--cores", "1", "all", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"params.yaml:{BAD_LINE}: not valid YAML"), proc.stderr[-2000:]


def _tiny_train_pipeline(params: dict) -> None:
    syn = params["datasets"]["synthetic"]
    syn["prepare"] = {"examples": [1500, 100, 100]}
    syn["sizes"] = {"enc_emb": 16, "dec_emb": 16, "enc_hidden": 32, "dec_hidden": 32, "nz": 8}
    syn["training"] = {"max_epochs": 8, "warm_up": 2, "min_epoch": 1, "patience": 1}
    params["experiments"] = {"demo": params["experiments"]["demo"]}


RUN = "results/synthetic/anneal/seed783435"


@needs_snakemake
@pytest.mark.slow
def test_snakemake_killed_during_training_resumes_to_the_identical_run(tmp_path):
    """SIGKILL to snakemake's whole process group in the middle of a training job; the rerun continues from
    the last finished epoch (not epoch 0) and ends bitwise identical to an uninterrupted run."""
    target = f"{RUN}/best.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = copy_pipeline(tmp_path / "full")
    edit_params(full, _tiny_train_pipeline)
    snakemake(full, "--cores", "1", target, env=env)

    cut = copy_pipeline(tmp_path / "cut")
    edit_params(cut, _tiny_train_pipeline)
    proc = subprocess.Popen(["snakemake", "--cores", "1", target], cwd=cut, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = cut / RUN / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / target).exists(), "the training finished before it could be killed"
    done = load_checkpoint(cut / RUN / "last.pt")["trainer_state"]["epoch"]
    assert 3 <= done < 8

    # Snakemake's own lock survives a SIGKILL: `--unlock` is its documented way on (it names it when it stops)
    locked = snakemake(cut, "--cores", "1", target, env=env, check=False)
    if locked.returncode != 0:
        assert "--unlock" in locked.stderr + locked.stdout, locked.stderr[-2000:]
        snakemake(cut, "--unlock", target, env=env)
        snakemake(cut, "--cores", "1", target, env=env)
    log = (cut / "logs" / "train" / "synthetic" / "anneal" / "seed783435.log").read_text()
    assert f"resumed from {RUN}/last.pt at epoch {done}" in log, log[-2000:]
    assert "epoch   0 " not in log   # no epoch was trained twice
    # train.log is a declared output, deleted before the rerun: its head comes back from last.pt (issue 26)
    run_log = [ln.split(" ", 2)[2] for ln in (cut / RUN / "train.log").read_text().splitlines()]
    assert run_log[0].startswith("method anneal"), run_log[:3]
    epochs = [int(ln.split()[1]) for ln in run_log if ln.startswith("epoch ")]
    assert epochs == list(range(len(records(full / RUN)))), run_log
    assert records(cut / RUN) == records(full / RUN)
    a, b = load_checkpoint(full / target)["model"], load_checkpoint(cut / target)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "Nothing to be done" in snakemake(cut, "-n", "--cores", "1", target, env=env).stdout


# ----------------------------------------------------------------------------------------------------------
# Issue 26 item 2: a resumed run keeps the whole history of its train.log
# ----------------------------------------------------------------------------------------------------------

def _kill_mid_training(corpus: Path, run: Path, epochs_done: int = 2) -> list[str]:
    """``textvae train`` SIGKILLed once ``epochs_done`` epochs are in metrics.jsonl; train.log's lines then."""
    argv = [sys.executable, "-m", "textvae", "train", "--data", str(corpus), "--method", "vae", "--out", str(run),
            "--epochs", "200", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= epochs_done:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "best.pt").exists(), "the training finished before it could be killed"
    return (run / "train.log").read_text().splitlines()


@pytest.mark.parametrize("deleted", [True, False], ids=["train-log-deleted", "train-log-kept"])
def test_sigkill_and_resume_keeps_the_head_of_train_log(corpus, tmp_path, deleted):
    """Snakemake and DVC delete train.log (a declared output) before they rerun the job: the resumed run puts
    the killed attempts' lines back in front; a plain resume (train.log still there) appends without repeating."""
    run = tmp_path / "run"
    before = _kill_mid_training(corpus, run)
    saved = load_checkpoint(run / "last.pt")
    done = saved["trainer_state"]["epoch"]
    assert before[0].split(" ", 2)[2].startswith("method vae") and any(" epoch   0 " in ln for ln in before)
    if deleted:
        (run / "train.log").unlink()
    assert _train(corpus, run, "--epochs", str(done + 1), "--resume") == 0
    after = (run / "train.log").read_text().splitlines()
    head = saved["log"].splitlines()
    assert len(head) >= 2 and before[:len(head)] == head
    assert after[:len(head)] == head, after[:5]
    assert sum("resumed from" in ln for ln in after) == 1
    assert [ln.split(" ", 2)[2][:9] for ln in after if ln.split(" ", 2)[2].startswith("epoch ")] == \
        [f"epoch {e:3d}" for e in range(done + 1)]   # every epoch once, in order


# ----------------------------------------------------------------------------------------------------------
# Issue 26 item 5: a full disk while torch writes a checkpoint is one line, and the last state stays intact
# ----------------------------------------------------------------------------------------------------------

class _FullDisk:
    """A file whose writes fail with ENOSPC after 1000 bytes (as a disk that fills up mid-checkpoint)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        if self._fh.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def test_disk_full_while_writing_last_pt_is_one_line_and_keeps_the_last_state(corpus, tmp_path, capsys,
                                                                               monkeypatch):
    import contextlib

    import textvae.modeling.checkpoint as checkpoint

    run = tmp_path / "run"
    assert _train(corpus, run, "--epochs", "1") == 0
    saved = (run / "last.pt").read_bytes()
    capsys.readouterr()
    real_open = checkpoint.atomic_open

    @contextlib.contextmanager
    def full_open(path, mode="wb"):
        with real_open(path, mode) as fh:
            yield _FullDisk(fh) if Path(path).name == "last.pt" else fh

    monkeypatch.setattr(checkpoint, "atomic_open", full_open)
    rc, err = cli(["train", "--data", corpus, "--method", "vae", "--out", run, "--epochs", "2", "--resume", *TINY],
                  capsys)
    assert rc == 1 and err.splitlines()[-1] == f"textvae train: error: {run}/last.pt: No space left on device", err
    assert len([ln for ln in err.splitlines() if "error" in ln or "Traceback" in ln]) == 1
    assert (run / "last.pt").read_bytes() == saved and not list(run.glob(".*tmp*"))
