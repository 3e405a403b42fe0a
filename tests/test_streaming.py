"""Background decoding and writing threads."""

from __future__ import annotations

import pytest

from dagan.io.streaming import BackgroundConsumer, prefetch


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
