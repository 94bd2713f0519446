"""A synchronous iterator over an async generator that runs in its own thread and event loop."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadedIterator(Generic[T]):
    """Iterates ``factory()`` (an async iterator) in a background thread; ``close()`` stops it.

    The background loop keeps running (pings, reads) while the consumer works on an event; at
    most ``maxsize`` events wait in between (the producer then waits without blocking its loop).
    """

    def __init__(self, factory: Callable[[], AsyncIterator[T]], *, maxsize: int = 10_000,
                 name: str = "mexc-feed") -> None:
        self._factory = factory
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._done = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._pump())
            self._ready.set()
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
            self._queue_put_final(_END)

    def _queue_put_final(self, item: Any) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    async def _pump(self) -> None:
        q = self._queue
        try:
            agen = self._factory()
            try:
                async for item in agen:
                    while True:
                        try:
                            q.put_nowait(item)
                            break
                        except queue.Full:
                            if self._stop.is_set():
                                return
                            await asyncio.sleep(0.005)
                    if self._stop.is_set():
                        return
            finally:
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    await aclose()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer
            self._queue_put_final(_Raised(exc))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Raised):
            self._done = True
            self.close()
            raise item.exc
        return item

    def close(self, timeout: float = 10.0) -> None:
        """Stop the producer (its generator is closed: connections and files close) and wait."""
        self._stop.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        # drain so a producer waiting for room can finish
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
            self._thread.join(timeout=0.01)
            timeout -= 0.06
            if timeout <= 0:
                break
        self._done = True

    def __enter__(self) -> ThreadedIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iterate_async(factory: Callable[[], AsyncIterator[T]], **kw: Any) -> ThreadedIterator[T]:
    return ThreadedIterator(factory, **kw)
