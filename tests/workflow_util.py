"""Helpers for the workflow tests: run the venv's snakemake, read its dry-run job counts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")


def env() -> dict[str, str]:
    """The venv first on PATH (as `make run` does); caches kept inside the test's folders."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def snakemake(workdir: Path, *args: str, configfile: Path | list[Path] | None = None,
              snakefile: Path = SNAKEFILE, timeout: int = 600) -> subprocess.CompletedProcess:
    """One Snakemake call; a list of config files is overlaid in order (``--configfile A B``)."""
    cmd = [SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir), "--nolock"]
    if configfile is not None:
        files = configfile if isinstance(configfile, list) else [configfile]
        cmd += ["--configfile", *map(str, files)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env(),
                          timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run ({} for 'Nothing to be done')."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3:]:
                m = re.match(r"^(\w+)\s+(\d+)$", row.strip())
                if not m:
                    break
                counts[m.group(1)] = int(m.group(2))
            break
    return counts


def planned_outputs(output: str) -> list[str]:
    """Every output file named in a dry run's job list."""
    files: list[str] = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("output:"):
            files += [f.strip() for f in line[len("output:"):].split(",")]
    return files


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())
