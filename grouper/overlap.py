"""Overlapping the stages of a batch stream: the next batch is read while this one is grouped, the
previous one written.

`ahead(items, depth)` runs an iterator in a background thread (started at once), at most `depth`
items ahead of its consumer; `behind(consume, depth)` hands items to a background consumer, at most `depth` waiting.
Both keep the order, pass an exception on to the caller's thread (where the item would have been
taken, or at the next hand-over / at `close()`), and stop their thread when the caller stops early
(an error, Ctrl-C): nothing is lost silently and nothing runs on after the caller has gone.

The overlap pays because the stages spend their time in code that releases the GIL: Polars (reading
Parquet and CSV, every expression), pyarrow's Parquet writer and the Cython kernel. With one thread
(`threads=1`) callers run the stages in line instead.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

_POLL = 0.1  # seconds a blocked hand-over waits before looking whether the other side has stopped


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def _put(slots: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item`, waiting while the queue is full; False when `stop` was set meanwhile."""
    while not stop.is_set():
        try:
            slots.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


class ahead:  # noqa: N801 - used like a function: an iterator over the items
    """The items of `items`, produced in a background thread at most `depth` items ahead (counting
    the one being produced), in order. The thread starts at once, so the caller can do other work
    (e.g. set up for the first item) while the first item is made. `then(item)`, if given, runs in
    that thread right after the item is handed over, before the next one is made, unless the
    consumer was already waiting for it (work on the item that the consumer does itself when it
    gets to it first: so the work goes to the stage that has time for it; `then` must not raise).

    An exception raised by `items` is raised here, after the items produced before it. `close()`
    (leaving a loop over it early: use `contextlib.closing`) stops the producer after the item it is
    making and closes `items`.
    """

    def __init__(self, items: Iterable[T], depth: int = 1, *, name: str = "grouper-read",
                 then: Callable[[T], None] | None = None):
        self._slots: queue.Queue = queue.Queue()
        self._room = threading.Semaphore(max(1, depth))   # items made and not yet taken, the one being made included
        self._stop = threading.Event()
        self._waiting = threading.Event()   # the consumer is waiting for the next item
        self._source = iter(items)
        self._then = then
        self._closed = False
        self._worker = threading.Thread(target=self._produce, name=name, daemon=True)
        self._worker.start()

    def _produce(self) -> None:
        while True:
            while not self._room.acquire(timeout=_POLL):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            try:
                item = next(self._source)
            except StopIteration:
                self._slots.put(_DONE)
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                self._slots.put(_Failed(exc))
                return
            consumer_idle = self._waiting.is_set()
            self._slots.put(item)
            if self._then is not None and not consumer_idle:
                self._then(item)

    def __iter__(self) -> "ahead":
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        self._waiting.set()
        item = self._slots.get()
        self._waiting.clear()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        self._room.release()
        return item

    def close(self) -> None:
        """Stop the producer (after the item it is making) and close `items` (its open files)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._worker.join()
        close = getattr(self._source, "close", None)
        if close is not None:   # the producer's generator: run its finally blocks (open files)
            close()


class behind:  # noqa: N801 - used like a function, as a context manager
    """`consume(item)` for each item put, in order, in a background thread with at most `depth` items
    waiting. `put` raises the consumer's exception if it has failed; `close()` waits for every item
    to be consumed and raises it too. As a context manager, leaving the block by an exception stops
    the consumer without waiting for the items still queued.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 1, *, name: str = "grouper-write"):
        self._slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._consume = consume
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._slots.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            try:
                self._consume(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                self._error = exc
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item: T) -> None:
        self._raise()
        if not _put(self._slots, item, self._stop):
            self._worker.join()
            self._raise()

    def close(self) -> None:
        """Wait until every item put has been consumed; raise the consumer's exception, if any."""
        if self._worker.is_alive():
            _put(self._slots, _DONE, self._stop)
            self._worker.join()
        self._raise()

    def abort(self) -> None:
        """Stop after the item being consumed; the items still waiting are dropped."""
        self._stop.set()
        self._worker.join()

    def __enter__(self) -> "behind":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()
