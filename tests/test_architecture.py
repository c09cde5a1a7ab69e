"""The package's layers (docs/architecture.md): import-linter's contracts in pyproject.toml hold, the training
stages of DVC depend on no report or workflow code, and no module grows past the size a reader can hold."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from textvae.workflow import dvc_stages

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "textvae"
LAYERS = ["cli", "workflow", "reports", "plan", "training", "probing", "evaluation", "config", "modeling",
          "corpora", "core"]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or pytest.fail("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                          text=True, env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_the_contract_names_every_subpackage():
    conf = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = [p.strip().removeprefix("textvae.") for entry in conf["contracts"][0]["layers"] for p in entry.split("|")]
    packages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
    assert sorted(layers) == packages == sorted(LAYERS)
    assert not [p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py")], \
        "every module lives in a layer's subpackage"


@pytest.mark.parametrize("rule", ["train", "evaluate", "probe", "data"])
def test_computing_stages_do_not_depend_on_reports_or_the_plan(rule):
    deps = dvc_stages.code_closure(dvc_stages.ENTRY_MODULES[rule], SRC)
    upper = [d for d in deps if d.split("/")[2] in ("reports", "plan", "workflow")]
    assert deps and not upper, f"{rule}: {upper}"


def test_dvc_yaml_lists_exactly_the_code_each_stage_runs():
    text = (REPO / "dvc.yaml").read_text()
    assert dvc_stages.with_code_deps(text, SRC) == text, "run `textvae pipeline dvc-yaml`"
    train = yaml.safe_load(text)["stages"]["train"]["do"]["deps"]
    assert "src/textvae/training/trainer.py" in train and "src/textvae/reports/claims.py" not in train


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
