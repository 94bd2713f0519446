"""A small time-window reorder buffer: nearly sorted in, sorted out, bounded memory."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Holds items for ``window_ns`` of event time, then releases them in (ts, arrival) order.

    An item is released once an item ``window_ns`` later in event time has arrived, so the
    output is sorted as long as no item arrives more than ``window_ns`` behind the latest one.
    One that does ("late") has its time raised to the last released time (``late`` counts
    them), so the output never goes backwards. Memory holds the items of one window.
    """

    __slots__ = ("_heap", "_seq", "last_ts", "late", "max_held", "max_ts", "window_ns")

    def __init__(self, window_ns: int) -> None:
        if window_ns < 0:
            raise ValueError(f"window_ns must be >= 0, got {window_ns}")
        self.window_ns = window_ns
        self._heap: list[tuple[int, int, T]] = []
        self._seq = 0
        self.max_ts: int | None = None
        self.last_ts: int | None = None  # ts of the last released item
        self.late = 0
        self.max_held = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, ts: int, item: T) -> Sequence[tuple[int, T]]:
        """Add one item; returns the ``(ts, item)`` pairs now older than the window, in order
        (usually none or one)."""
        if self.last_ts is not None and ts < self.last_ts:
            self.late += 1
            ts = self.last_ts
        heap = self._heap
        heapq.heappush(heap, (ts, self._seq, item))
        self._seq += 1
        if len(heap) > self.max_held:
            self.max_held = len(heap)
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        limit = self.max_ts - self.window_ns
        if heap[0][0] > limit:
            return ()
        out = []
        while heap and heap[0][0] <= limit:
            ts_out, _, released = heapq.heappop(heap)
            out.append((ts_out, released))
        self.last_ts = out[-1][0]
        return out

    def flush(self) -> Iterator[tuple[int, T]]:
        """Release everything still held, in order."""
        heap = self._heap
        while heap:
            ts_out, _, out = heapq.heappop(heap)
            self.last_ts = ts_out
            yield ts_out, out
