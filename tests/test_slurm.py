"""profiles/slurm against a real Slurm: Debian's slurm-wlm and munge (installed by .ci/run; this test installs
nothing) as a single-node cluster on 127.0.0.1 in a temporary folder, with no GPUs (a test profile maps the
rules' GPU requests off). A training, its evaluation and a report of the demo run through
snakemake-executor-plugin-slurm."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from test_pipeline import copy_pipeline, edit_params, snakemake, tiny_demo

# Inside a job the executor plugin drops SLURM_* variables (SLURM_CONF too) before its `srun`, which then reads
# the default path, as on a real cluster: the test links its configuration there for its duration.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel")


def _missing() -> str | None:
    absent = [n for n, p in DAEMONS.items() if not (shutil.which(n) or Path(p).exists())]
    absent += [n for n in CLIENTS if not shutil.which(n)]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge; .ci/run does)"
    if os.geteuid() != 0:
        return "slurmd of a throw-away cluster needs root (CI runs as root)"
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists: this machine has a Slurm of its own (the test configures a throw-away one)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm not installed (pip install -e '.[pipeline]')"
    return None


pytestmark = [pytest.mark.skipif(_missing() is not None, reason=_missing() or ""), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(name: str) -> str:
    return shutil.which(name) or DAEMONS[name]


SLURM_CONF = """\
ClusterName=textvae-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# no accounting database: finished jobs stay visible to `squeue --states=all` for this long
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    """munged + slurmctld + slurmd on 127.0.0.1; yields the environment for the Slurm clients."""
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool"):
        (root / d).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, ctld_port=_free_port(), d_port=_free_port(), cpus=os.cpu_count(),
                                      mem=mem))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.symlink_to(conf)
    try:
        subprocess.run([_daemon("munged"), "--force", f"--key-file={key}", f"--socket={root}/munge.sock",
                        f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                        f"--seed-file={root}/seed"], check=True, env=env)
        subprocess.run([_daemon("slurmctld"), "-f", str(conf)], check=True, env=env)
        subprocess.run([_daemon("slurmd"), "-f", str(conf)], check=True, env=env)
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                           text=True).stdout:
            if time.time() > deadline:
                pytest.fail("the test cluster did not come up:\n" + (root / "slurmctld.log").read_text()[-3000:])
            time.sleep(1)
        yield env
    finally:
        SYSTEM_CONF.unlink()
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            p = root / pid_file
            if p.exists():
                try:
                    os.kill(int(p.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


def slurm_test_profile(work: Path) -> Path:
    """profiles/slurm as shipped, but no GPUs (this cluster has none) and requests that fit one small node."""
    cfg = yaml.safe_load((work / "profiles" / "slurm" / "config.yaml").read_text())
    for rule, res in cfg["set-resources"].items():
        res.update(gpu=0, mem_mb=1000, cpus_per_task=1, runtime=30)
    cfg["default-resources"].update(mem_mb=1000)
    out = work / "profiles" / "slurm-test"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def test_a_training_its_evaluation_and_a_report_through_real_slurm(tmp_path, slurm_cluster):
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    slurm_test_profile(work)
    run_dir = work / "results" / "synthetic" / "vae" / "seed783435"
    proc = snakemake(work, "--workflow-profile", "profiles/slurm-test", "--slurm-status-command", "squeue",
                     "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                     "--", "results/synthetic/vae/seed783435/eval_test.json", "reports/demo/table9.md",
                     env={**slurm_cluster, "OMP_NUM_THREADS": "1"}, check=False, timeout=900)
    if proc.returncode != 0:
        logs = "".join(f"\n--- {p}\n" + p.read_text()[-2000:] for p in (work / ".snakemake").rglob("slurm_logs/**/*.log"))
        pytest.fail(proc.stderr[-4000:] + logs)
    assert json.loads((run_dir / "eval_test.json").read_text())["ppl"] > 0
    assert (run_dir / "best.pt").exists() and (work / "reports" / "demo" / "table9.md").exists()
    # the training and the evaluation ran as Slurm jobs on the gpu partition; data and report stayed local
    jobs = subprocess.run(["squeue", "--states=all", "-h", "-o", "%P|%T|%j"], env=slurm_cluster,
                          capture_output=True, text=True, check=True).stdout.split()
    assert len(jobs) == 2 and all(j.startswith("gpu|COMPLETED|") for j in jobs), jobs
