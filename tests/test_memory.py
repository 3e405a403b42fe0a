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
