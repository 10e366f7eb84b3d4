"""GPU slot assignment, tested without GPUs: concurrent holders get distinct devices."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from apt.errors import AptError
from apt.gpu import gpu_slot, visible_gpus

# A child that takes a slot, records the CUDA_VISIBLE_DEVICES it was given, then waits for a
# "go" file so that all children hold their slots at the same time.
_HOLD = (
    "import os, pathlib, sys, time\n"
    "out, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
    "out.write_text(os.environ['CUDA_VISIBLE_DEVICES'])\n"
    "t = time.time()\n"
    "while not go.exists() and time.time() - t < 60: time.sleep(0.05)\n"
)


def _start(tmp_path, name, num_gpus, extra_env=None):
    cmd = [sys.executable, "-m", "apt.gpu", "--lock-dir", str(tmp_path / "locks"),
           "--num-gpus", str(num_gpus), "--", sys.executable, "-c", _HOLD,
           str(tmp_path / f"{name}.dev"), str(tmp_path / f"{name}.go")]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout=60.0):
    t = time.time()
    while not path.exists() or not path.read_text():
        if time.time() - t > timeout:
            raise AssertionError(f"{path} not written")
        time.sleep(0.05)
    return path.read_text()


def test_four_concurrent_jobs_get_four_distinct_gpus_and_a_freed_slot_is_reused(tmp_path):
    procs = {f"job{i}": _start(tmp_path, f"job{i}", 4) for i in range(4)}
    devices = {name: _wait_for(tmp_path / f"{name}.dev") for name in procs}
    assert sorted(devices.values()) == ["0", "1", "2", "3"]

    # A fifth job must wait: all four slots are held.
    fifth = _start(tmp_path, "job4", 4)
    time.sleep(1.0)
    assert not (tmp_path / "job4.dev").exists()
    assert fifth.poll() is None

    # Release one slot: the waiting job gets exactly that device.
    (tmp_path / "job2.go").write_text("")
    assert procs["job2"].wait(60) == 0
    assert _wait_for(tmp_path / "job4.dev") == devices["job2"]

    for name in ["job0", "job1", "job3", "job4"]:
        (tmp_path / f"{name}.go").write_text("")
    for p in [*procs.values(), fifth]:
        assert p.wait(60) == 0


def test_a_killed_holder_releases_its_slot(tmp_path):
    p = _start(tmp_path, "a", 1)
    assert _wait_for(tmp_path / "a.dev") == "0"
    p.kill()
    p.wait(30)
    # the child python may still run for a moment; its parent held the lock and is gone
    with gpu_slot(tmp_path / "locks", num_gpus=1, wait=30) as dev:
        assert dev == "0"
    (tmp_path / "a.go").write_text("")


def test_slots_follow_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.delenv("APT_NUM_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert visible_gpus() == ["5", "7"]
    with gpu_slot(tmp_path, wait=0) as a:
        with gpu_slot(tmp_path, wait=0) as b:
            assert {a, b} == {"5", "7"}
            with pytest.raises(AptError, match="no free GPU"):
                with gpu_slot(tmp_path, wait=0):
                    pass
        with gpu_slot(tmp_path, wait=0) as c:   # b was released
            assert c == b


def test_exit_status_of_the_command_is_passed_on(tmp_path):
    res = subprocess.run([sys.executable, "-m", "apt.gpu", "--lock-dir", str(tmp_path),
                          "--num-gpus", "1", "--", sys.executable, "-c", "raise SystemExit(3)"])
    assert res.returncode == 3
