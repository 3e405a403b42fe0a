"""How the process's heap (glibc's malloc) holds memory that frames and networks free.

Tensors the networks free go back to malloc, which keeps them for reuse rather than returning
them to the system. Two habits of glibc make that resident memory grow past what is live: every
thread that allocates gets an arena of its own (up to eight per core), each caching its own
freed activations; and memory freed once, such as the plain networks after their fused twins
are built, stays cached until something trims it. Both are no-ops where glibc is absent.

Training is the opposite case: each step allocates and frees the same few gigabytes of
activations, and glibc hands every block over its mmap threshold (at most 32 MB) pages of its own
and unmaps them on free, so the kernel faults in and zeroes those pages again on every step.
``keep_freed_memory`` serves them from the heap and keeps them there. glibc's heap, though, does
not hand most of those kept blocks out again for the next step's requests, so the process keeps
growing past what is live; ``run_under_allocator`` re-runs a command under tcmalloc, whose size
classes do (``dagan train --allocator tcmalloc``).
Evaluation repeats its passes the same way (an Inception batch of 20 frames maps about 3 GB of
fresh pages over 64 pairs), so ``dagan evaluate`` keeps its freed memory too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagan.errors import DaganError

#: glibc's mallopt parameters (malloc.h): free memory kept at the heap's top before trimming, the
#: number of blocks served by mmap of their own, the number of arenas.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
#: The largest trim threshold mallopt takes (an int): in practice, never trim.
_NEVER_TRIM = 2**31 - 1

#: Arenas for a whole dagan process: the frame workers, decoder and encoder threads share one.
#: Peak RSS of a 40-frame ``dagan animate`` (full model, CPU) over repeated runs: 1.35-1.39 GB
#: with one arena, 1.41-1.48 GB with two, about 1.5 GB with glibc's default (sixteen on two
#: cores); frames/s differed by less than the run-to-run noise (one malloc lock, a few hundred
#: allocations a frame).
HEAP_ARENAS = 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Loaded once: heap_usage is sampled every few milliseconds by benchmarks/train_memory.py.
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            if hasattr(libc, "mallinfo2"):
                libc.mallinfo2.restype = _MallocInfo
            return libc
    return None


def _user_set(variable: str, tunable: str) -> bool:
    return variable in os.environ or f"glibc.malloc.{tunable}" in os.environ.get("GLIBC_TUNABLES", "")


def limit_heap_arenas(count: int = HEAP_ARENAS) -> None:
    """Cap the arenas that threads created from now on allocate from, unless the user set a cap.

    A process-wide setting; ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES=glibc.malloc.arena_max=N``
    in the environment win over it.
    """
    if _user_set("MALLOC_ARENA_MAX", "arena_max"):
        return
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, count)


def keep_freed_memory() -> None:
    """Serve large blocks from the heap and keep what is freed there, unless the user set either.

    A process-wide setting for training and evaluation. One vox-adv-256 step at batch 2 on CPU used to fault in
    about 4 GB of fresh zeroed pages (a million minor faults, 3-4 s of kernel time); with this,
    once the heap has settled (about ten steps), a step faults none, for a peak RSS about 10%
    higher (benchmarks/train.py and docs/performance.md).
    ``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_`` or their ``GLIBC_TUNABLES`` win over it.
    """
    libc = _libc()
    if libc is None:
        return
    if not _user_set("MALLOC_MMAP_MAX_", "mmap_max"):
        libc.mallopt(_M_MMAP_MAX, 0)
    if not _user_set("MALLOC_TRIM_THRESHOLD_", "trim_threshold"):
        libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)


def return_freed_memory() -> None:
    """Collect garbage and give the heap's free pages back to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class _MallocInfo(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h), whose fields are all ``size_t``."""

    _names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in _names.split()]


@dataclass(frozen=True)
class HeapUsage:
    """Bytes that malloc has handed out and not had back, over all arenas."""

    #: In blocks that glibc mapped on their own (unmapped on free, faulted in again when reused).
    mapped: int
    #: In use in all, mapped blocks included.
    in_use: int


def heap_usage() -> HeapUsage | None:
    """What the process's heap has handed out now; None without glibc 2.33+ (``mallinfo2``) serving malloc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2") or heap_allocator() != "glibc":
        return None
    info = libc.mallinfo2()
    return HeapUsage(mapped=info.hblkhd, in_use=info.uordblks + info.hblkhd)


#: What ``--allocator`` of the training commands takes: the process's own heap (glibc's, unless
#: the user's LD_PRELOAD says otherwise), or gperftools' tcmalloc.
ALLOCATORS = ("default", "tcmalloc")
#: The libraries that provide tcmalloc, as the dynamic linker names them, the minimal build first.
TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")
#: Marks a command re-run under an allocator, so that a preload that did not take is an error,
#: not an endless chain of re-runs.
_PRELOADED = "DAGAN_PRELOADED_ALLOCATOR"


@functools.cache
def heap_allocator() -> str:
    """Whose malloc serves this process: "tcmalloc", "jemalloc" or "glibc" (by the libraries it maps)."""
    with contextlib.suppress(OSError):
        maps = Path("/proc/self/maps").read_text()
        for name in ("tcmalloc", "jemalloc"):
            if f"/lib{name}" in maps:
                return name
    return "glibc"


def find_tcmalloc() -> str | None:
    """The tcmalloc library the dynamic linker would load, by its file name; None if there is none."""
    for name in TCMALLOC_LIBRARIES:
        if found := ctypes.util.find_library(name):
            return found
    return None


def run_under_allocator(allocator: str, command: Sequence[str]) -> None:
    """Return if ``allocator`` serves this process; else replace the process by ``command`` with it preloaded.

    A heap allocator can only be chosen before the process starts (``LD_PRELOAD``): blocks that
    one malloc handed out cannot be freed by another. ``command`` is what to run instead, the
    same command line (``[sys.executable, "-m", "dagan", ...]``); it inherits the environment.
    """
    if allocator == "default" or heap_allocator() == allocator:
        return
    if allocator != "tcmalloc":
        raise DaganError(f"unknown allocator {allocator!r} (choose from {', '.join(ALLOCATORS)})")
    if os.environ.get(_PRELOADED) == allocator:
        raise DaganError(f"--allocator {allocator}: preloading {os.environ.get('LD_PRELOAD')} did not take effect")
    if not sys.platform.startswith("linux"):
        raise DaganError(f"--allocator {allocator} works on Linux only")
    library = find_tcmalloc()
    if library is None:
        raise DaganError(
            "--allocator tcmalloc: no libtcmalloc_minimal found; install it (Debian and Ubuntu: apt-get install "
            "libtcmalloc-minimal4; conda: gperftools) or leave --allocator at default"
        )
    env = dict(os.environ, **{_PRELOADED: allocator})
    env["LD_PRELOAD"] = ":".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], list(command), env)
