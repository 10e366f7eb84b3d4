"""Start-up check for a run under Snakemake's SLURM executor: can the plugin follow its jobs?

snakemake-executor-plugin-slurm (2.8.0, pinned) learns that a job ended from ``squeue`` or
``sacct``. ``squeue`` lists a finished job for MinJobAge seconds only, so the plugin uses it only
when MinJobAge is at least 3 x its first status check, and silently takes ``sacct`` otherwise.
``sacct`` needs SLURM accounting (slurmdbd), and reports a job cancelled with scancel as
"CANCELLED by <uid>", a state the plugin takes for a running job: the run then waits forever.
The workflow's ``onstart`` hook (workflow/rules/common.smk) calls :func:`check_job_tracking` with
the plugin's settings and ``scontrol show config``, so that a cluster where the run would hang
is refused at once with what to do, and a risky one is named.
"""

from __future__ import annotations

import re
import subprocess
from typing import Callable

from apt.errors import AptError

NO_ACCOUNTING = "accounting_storage/none"


def parse_show_config(text: str) -> dict[str, str]:
    """``scontrol show config`` output -> {key: value} (values as printed)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\s*=\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _seconds(value: str | None) -> int | None:
    m = re.match(r"^(\d+)\s*(\w*)", value or "")
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).lower()
    return n * 3600 if unit in ("h", "hour", "hours") else n


def status_command_used(status_command: str | None, init_seconds: int,
                        slurm: dict[str, str]) -> str:
    """The command the plugin follows jobs with: squeue only if asked for and MinJobAge allows."""
    min_age = _seconds(slurm.get("MinJobAge"))
    if status_command == "squeue" and min_age is not None and min_age >= 3 * init_seconds:
        return "squeue"
    return "sacct"


def check_job_tracking(status_command: str | None, init_seconds: int, slurm: dict[str, str],
                       probe_sacct: Callable[[], str | None]) -> list[str]:
    """Raise AptError where the plugin cannot follow its jobs; return warnings for the risks.

    ``slurm`` is ``scontrol show config`` parsed; ``probe_sacct()`` (called only when the
    plugin will use sacct) returns None if sacct answers, else what it printed.
    """
    used = status_command_used(status_command, init_seconds, slurm)
    if used == "squeue":
        return []
    need = 3 * init_seconds
    why = ("" if status_command == "sacct" else
           f" (MinJobAge={slurm.get('MinJobAge', '?')} is below {need} s, 3 x the plugin's "
           "first status check, so the plugin follows jobs with sacct)")
    if slurm.get("AccountingStorageType", NO_ACCOUNTING) == NO_ACCOUNTING:
        sacct_error = f"AccountingStorageType={NO_ACCOUNTING}"
    else:
        sacct_error = probe_sacct()
    if sacct_error:
        raise AptError(
            f"SLURM accounting does not answer ({sacct_error}){why}: the executor plugin cannot "
            "see its jobs end and the run would wait forever. Ask the cluster's admins for "
            f"MinJobAge >= {need} s (and run with --slurm-status-command squeue, as "
            "profiles/slurm does) or for working accounting (slurmdbd); a smaller "
            "--slurm-init-seconds-before-status-checks also lowers the MinJobAge needed")
    return [f"jobs are followed with sacct{why}: the executor plugin 2.8.0 does not see a job "
            "cancelled with scancel end (sacct says 'CANCELLED by <uid>'); such a run waits "
            f"forever instead of retrying. MinJobAge >= {need} s and --slurm-status-command "
            "squeue avoid it"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AptError(f"could not run {' '.join(cmd)!r} ({exc}); is SLURM installed on this "
                       "machine (the one that submits the jobs)?") from exc


def sacct_probe() -> str | None:
    """None if ``sacct`` answers, else what it printed."""
    res = _run(["sacct", "-X", "--noheader", "--starttime", "now", "--format", "JobIDRaw"])
    if res.returncode == 0:
        return None
    lines = (res.stderr or res.stdout).strip().splitlines()
    return lines[-1] if lines else f"sacct exited with status {res.returncode}"


def scontrol_show_config() -> dict[str, str]:
    res = _run(["scontrol", "show", "config"])
    if res.returncode != 0:
        raise AptError(f"'scontrol show config' failed: {res.stderr.strip()}")
    return parse_show_config(res.stdout)
