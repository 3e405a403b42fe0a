"""How the process's heap (glibc's malloc) holds memory that frames and networks free.

Tensors the networks free go back to malloc, which keeps them for reuse rather than returning
them to the system. Two habits of glibc make that resident memory grow past what is live: every
thread that allocates gets an arena of its own (up to eight per core), each caching its own
freed activations; and memory freed once, such as the plain networks after their fused twins
are built, stays cached until something trims it. Both are no-ops where glibc is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os

#: glibc's mallopt parameter for the number of arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8

#: Arenas for a whole dagan process: the frame workers, decoder and encoder threads share one.
#: Peak RSS of a 40-frame ``dagan animate`` (full model, CPU) over repeated runs: 1.35-1.39 GB
#: with one arena, 1.41-1.48 GB with two, about 1.5 GB with glibc's default (sixteen on two
#: cores); frames/s differed by less than the run-to-run noise (one malloc lock, a few hundred
#: allocations a frame).
HEAP_ARENAS = 1


def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


def limit_heap_arenas(count: int = HEAP_ARENAS) -> None:
    """Cap the arenas that threads created from now on allocate from, unless the user set a cap.

    A process-wide setting; ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES=glibc.malloc.arena_max=N``
    in the environment win over it.
    """
    if "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, count)


def return_freed_memory() -> None:
    """Collect garbage and give the heap's free pages back to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
