"""Atomic writes: complete or absent, with ordinary permissions."""

import os
import stat
from pathlib import Path

import pytest

from apt.io import atomic_directory, write_json_atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_the_umask_mode_not_tempfiles_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        f = write_json_atomic(tmp_path / "m.json", {"ppl": 1.0})
        with atomic_directory(tmp_path / "ckpt") as d:
            (d / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert _mode(f) == 0o644
    assert _mode(tmp_path / "ckpt") == 0o755


def test_failed_directory_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "ckpt") as d:
            (d / "half").write_bytes(b"x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_directory_replaces_previous_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as d:
            (d / "a").write_text("2")
            raise RuntimeError
    assert (target / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_code_version_tracks_the_library_source():
    from apt.provenance import code_version
    a = code_version("pruning")
    assert a == code_version("pruning") and len(a) == 16
    assert code_version("pruning", "engine") not in (a, code_version("engine"))
    assert code_version("provenance.py") != code_version("io.py")
    with pytest.raises(FileNotFoundError):
        code_version("no_such_module.py")


def test_code_digest_ignores_comments_and_docstrings_only():
    from apt.provenance import _code_digest
    base = b'"""doc"""\nimport os\n\ndef f(x):\n    """what f does"""\n    return x + 1  # add one\n'
    same = b'"""other doc"""\nimport os\n\n\ndef f(x):\n    # a comment\n    return x + 1\n'
    changed = b'"""doc"""\nimport os\n\ndef f(x):\n    """what f does"""\n    return x + 2\n'
    assert _code_digest(base) == _code_digest(same)
    assert _code_digest(base) != _code_digest(changed)
    assert _code_digest(b"def (:") == b"def (:"      # not Python: the bytes themselves


def test_method_code_version_follows_only_the_code_the_method_runs(tmp_path):
    """An edit of Wanda's module changes Wanda's version and no other method's; an edit of a
    module every solver imports (masks) changes all; a comment changes none."""
    import shutil

    import apt
    from apt.provenance import method_code_version, pruning_modules_for

    root = shutil.copytree(Path(apt.__file__).parent, tmp_path / "apt")
    methods = ("magnitude", "wanda", "sparsegpt", "apt")

    def versions():
        return {m: method_code_version(m, "engine", root=root) for m in methods}

    before = versions()
    assert len(set(before.values())) == 4
    assert "admm" in pruning_modules_for("apt", "engine", root=root)
    assert "admm" not in pruning_modules_for("sparsegpt", "engine", root=root)
    wanda = root / "pruning" / "wanda.py"
    wanda.write_text(wanda.read_text() + "\n# a comment\n")
    assert versions() == before
    wanda.write_text(wanda.read_text() + "\nEXTRA = 1\n")
    after = versions()
    assert after["wanda"] != before["wanda"]
    assert {m: after[m] for m in methods if m != "wanda"} == {
        m: before[m] for m in methods if m != "wanda"}
    masks = root / "pruning" / "masks.py"
    masks.write_text(masks.read_text() + "\nEXTRA = 1\n")
    assert all(versions()[m] != after[m] for m in methods)
    with pytest.raises(ValueError, match="unknown method"):
        method_code_version("nosuch", root=root)
