"""Atomic output: the umask's mode, one-line errors for full disks and unwritable paths, nothing left behind."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from repscope import io
from repscope.errors import OutputError


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = io.write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_non_regular_targets_are_refused_not_replaced(tmp_path):
    with pytest.raises(OutputError, match=r"'/dev/full': it exists and is not a regular file"):
        io.write_bytes("/dev/full", b"x")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # the device is still there
    (tmp_path / "r.json").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        io.write_json(tmp_path / "r.json", {})
    assert (tmp_path / "r.json").is_dir()


def test_unwritable_paths_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [(tmp_path / "file" / "sub" / "r.json", "Not a directory"),
             (tmp_path / ("n" * 300) / "r.json", "File name too long"),
             (Path("/proc/repscope-test/r.json"), "cannot write")]
    for path, fragment in cases:
        with pytest.raises(OutputError) as err:
            io.write_text(path, "x")
        message = str(err.value)
        assert fragment in message and str(path) in message and "\n" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failed_write_removes_its_temporary_file_and_new_folders(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="No space left on device. Free disk space"):
        io.write_json(tmp_path / "new" / "deeper" / "r.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # neither a temporary file nor the empty folders


def test_an_old_file_survives_a_failed_rewrite(tmp_path, monkeypatch):
    path = io.write_text(tmp_path / "keep.txt", "old")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OutputError, match="Input/output error"):
        io.write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_real_file_size_limit_is_one_line(tmp_path):
    """The kernel refuses the write (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) in a child process."""
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from repscope import io
        from repscope.errors import OutputError
        try:
            io.write_bytes({str(tmp_path / 'big.bin')!r}, b"x" * 100_000)
        except OutputError as err:
            print(err)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cannot write" in out.stdout and "File too large" in out.stdout and out.stdout.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_broken_stdout_exits_quietly():
    """`repscope models | <reader that closed>`: no traceback, status 141 (128 + SIGPIPE), as Unix tools."""
    code = textwrap.dedent("""
        import os, sys
        from repscope.cli import main
        read, write = os.pipe()
        os.close(read)
        os.dup2(write, sys.stdout.fileno())
        code = main(["models"])
        sys.stderr.write(f"status {code}\\n")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stderr.strip() == "status 141", out.stderr
    assert out.returncode == 0
