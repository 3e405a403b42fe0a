"""The heap policies of dagan.pipelines.memory, on glibc (skipped elsewhere)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dagan.pipelines import memory

pytestmark = pytest.mark.skipif(memory._libc() is None, reason="glibc's mallopt is not available here")

# Holds a 64 MB tensor (over glibc's largest mmap threshold) and prints how many more bytes
# glibc then has in blocks mapped on their own (mallinfo2's hblkhd): such blocks are unmapped on
# free, and their pages faulted in and zeroed again on the next allocation.
_MAPPED = """
import sys, torch
from dagan.pipelines.memory import heap_usage, keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
before = heap_usage().mapped
block = torch.ones(16 * 2**20)
print(heap_usage().mapped - before)
"""


def _mapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _MAPPED, mode], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


def test_kept_memory_serves_large_tensors_from_the_heap():
    if memory.heap_usage() is None:
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    assert _mapped_bytes("default") >= 64 * 2**20
    assert _mapped_bytes("keep") < 2**20


def test_the_users_malloc_settings_win(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))

    monkeypatch.setattr(memory, "_libc", FakeLibc)
    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    memory.keep_freed_memory()
    assert calls == [(memory._M_MMAP_MAX, 0), (memory._M_TRIM_THRESHOLD, memory._NEVER_TRIM)]
    calls.clear()
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    memory.keep_freed_memory()
    assert calls == []


needs_tcmalloc = pytest.mark.skipif(
    memory.find_tcmalloc() is None, reason="no libtcmalloc_minimal here (Debian: apt-get install libtcmalloc-minimal4)"
)

# Run in a fresh process: re-runs itself as a command that says whose malloc serves it.
_REEXEC = """
import sys
from dagan.pipelines.memory import run_under_allocator
report = "from dagan.pipelines.memory import heap_allocator, heap_usage; print(heap_allocator(), heap_usage())"
run_under_allocator(sys.argv[1], [sys.executable, "-c", report])
print("not re-run")
"""


@needs_tcmalloc
def test_the_re_run_command_is_served_by_tcmalloc():
    def reexec(allocator: str) -> str:
        run = subprocess.run([sys.executable, "-c", _REEXEC, allocator], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    # Under tcmalloc glibc's mallinfo2 counts nothing of what is allocated: heap_usage says so.
    assert reexec("tcmalloc") == "tcmalloc None"
    assert reexec("default") == "not re-run"


class _ReplacedError(Exception):
    """Raised instead of replacing the test process."""


def _train_argv(tmp_path) -> list[str]:
    return ["train", "--allocator", "tcmalloc", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--config", str(tmp_path / "none.yaml"), "--quiet"]  # fmt: skip


def test_train_re_runs_itself_with_tcmalloc_preloaded(monkeypatch, tmp_path):
    from dagan.cli import main

    replaced = []

    def execve(path, argv, env):
        replaced.append((path, argv, env))
        raise _ReplacedError

    monkeypatch.setattr(memory.os, "execve", execve)
    monkeypatch.setattr(memory, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    monkeypatch.setattr(memory, "heap_allocator", lambda: "glibc")
    monkeypatch.setenv("LD_PRELOAD", "libuser.so")
    monkeypatch.delenv(memory._PRELOADED, raising=False)
    with pytest.raises(_ReplacedError):
        main(_train_argv(tmp_path))
    [(path, argv, env)] = replaced
    assert path == sys.executable and argv == [sys.executable, "-m", "dagan", *_train_argv(tmp_path)]
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4:libuser.so" and env[memory._PRELOADED] == "tcmalloc"
    # Already served by tcmalloc (the re-run, or the user's own LD_PRELOAD): the command goes on.
    monkeypatch.setattr(memory, "heap_allocator", lambda: "tcmalloc")
    assert main(_train_argv(tmp_path)) == 2  # the missing config, not a second re-run
    assert len(replaced) == 1


@pytest.mark.parametrize(
    ("found", "preloaded", "message"),
    [(None, None, "no libtcmalloc_minimal found"), ("libtcmalloc_minimal.so.4", "tcmalloc", "did not take effect")],
)
def test_an_allocator_that_cannot_be_had_is_one_error_line(monkeypatch, tmp_path, capsys, found, preloaded, message):
    from dagan.cli import main

    monkeypatch.setattr(memory.os, "execve", lambda *args: pytest.fail("must not re-run"))
    monkeypatch.setattr(memory, "find_tcmalloc", lambda: found)
    monkeypatch.setattr(memory, "heap_allocator", lambda: "glibc")
    if preloaded:
        monkeypatch.setenv(memory._PRELOADED, preloaded)
    assert main(_train_argv(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("dagan: error: --allocator tcmalloc")
