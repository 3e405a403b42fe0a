"""Overlap decoding, computing and encoding with background threads."""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterable: Iterable[T], size: int = 8) -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, keeping at most ``size`` items ahead."""
    items: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put unless the consumer has gone away; False once it has."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(_Failure(exc))

    thread = threading.Thread(target=produce, daemon=True, name="dagan-prefetch")
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()


class BackgroundConsumer:
    """Run ``consume(item)`` in a background thread; errors surface on ``put`` or ``close``."""

    def __init__(self, consume: Callable[[Any], None], size: int = 8):
        self._consume = consume
        self._items: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="dagan-writer")
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _DONE:
                return
            if self._error is None and not self._cancelled:
                try:
                    self._consume(item)
                except BaseException as exc:  # re-raised in the producer thread
                    self._error = exc

    def put(self, item: Any) -> None:
        """Queue ``item`` (blocks when the queue is full)."""
        if self._error is not None:
            raise self._error
        self._items.put(item)

    def close(self) -> None:
        """Wait for every queued item to be consumed, then re-raise any error."""
        self._items.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Drop what is still queued and stop the thread (after a failure elsewhere)."""
        self._cancelled = True
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        self._items.put(_DONE)
        self._thread.join()


def ordered_map(
    function: Callable[[T], Any],
    items: Iterable[T],
    workers: int,
    initializer: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """``map(function, items)`` on ``workers`` threads, yielding in input order, a few items ahead.

    ``initializer`` runs once in each worker thread before its first item.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dagan-worker", initializer=initializer)
    with pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
