"""Background decoding and writing threads."""

from __future__ import annotations

import threading
import time

import pytest

from dagan.io.streaming import BackgroundConsumer, ordered_map, prefetch


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(range(50), size=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decoder broke")

    with pytest.raises(ValueError, match="decoder broke"):
        list(prefetch(broken()))


def test_background_consumer_sees_everything_and_reraises():
    seen = []
    sink = BackgroundConsumer(seen.append, size=2)
    for i in range(20):
        sink.put(i)
    sink.close()
    assert seen == list(range(20))

    def explode(item):
        raise OSError("disk full")

    sink = BackgroundConsumer(explode)
    sink.put(1)
    with pytest.raises(OSError, match="disk full"):
        sink.close()


def test_ordered_map_runs_items_at_once_and_keeps_their_order():
    both_running = threading.Barrier(2, timeout=10)

    def slow_square(x):
        if x < 2:
            both_running.wait()  # only passes if the first two items run at the same time
        time.sleep(0.002 * (7 - x % 8))  # later items finish first
        return x * x

    assert list(ordered_map(slow_square, range(30), workers=2)) == [x * x for x in range(30)]
    assert list(ordered_map(lambda x: -x, range(5), workers=1)) == [0, -1, -2, -3, -4]

    def fails_at_three(x):
        if x == 3:
            raise ValueError("frame 3 broke")
        return x

    with pytest.raises(ValueError, match="frame 3 broke"):
        list(ordered_map(fails_at_three, range(10), workers=2))
