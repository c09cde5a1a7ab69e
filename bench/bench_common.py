"""What the benchmark scripts share: shell output, the CPU's name, and replacing one section of BENCHMARKS.md."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path | None = None) -> str:
    """A command's stripped stdout ("" when it cannot run)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO, check=False,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    for line in sh(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section whose heading line starts with ``heading`` (up to the next ``## `` heading), or
    append it; the file is replaced atomically."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(heading)), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        tail = [""] + lines[end:] if end < len(lines) else []
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + tail) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def publish(text: str, heading: str, path: str | None) -> None:
    """Print a rendered section, and write it into ``path`` when given."""
    print(text)
    if path:
        write_section(Path(path), heading, text)


def emit_json(out: dict, path: str | None) -> int:
    """Print a bench's JSON result and write it to ``path`` if given; the script's exit code (0)."""
    import json

    print(json.dumps(out, indent=1))
    if path:
        Path(path).write_text(json.dumps(out, indent=1))
    return 0
