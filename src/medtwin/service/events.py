"""The in-app event broker: live events (new twin state, alarms, new records) to open dashboards.

One :class:`EventBroker` per app, on ``app.state.broker`` (no module globals).  A subscriber gets a bounded
``asyncio.Queue`` of events for one patient (or all, ``patient=None``); a slow subscriber loses its oldest
events, never blocks ingest.  :meth:`EventBroker.publish` may be called from any thread (ingest endpoints run
in the thread pool): it hands the event to the event loop with ``call_soon_threadsafe``.

An event is a dict ``{"type": ..., "patient": ..., "data": {...}}``; types: ``measurement`` (a stored
record), ``state`` (the twin's new state: time, estimates with 90 % bands, forecast), ``alarm``.

Examples
--------
>>> import asyncio
>>> async def demo():
...     broker = EventBroker()
...     broker.bind_loop(asyncio.get_running_loop())
...     async with broker.subscribe("p1") as queue:
...         broker.publish({"type": "state", "patient": "p1", "data": {}})
...         broker.publish({"type": "state", "patient": "p2", "data": {}})
...         await asyncio.sleep(0)
...         return queue.qsize(), (await queue.get())["patient"]
>>> asyncio.run(demo())
(1, 'p1')
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["EventBroker"]


class EventBroker:
    """Fan-out of events to subscribers' queues (per patient, or all)."""

    def __init__(self, maxsize: int = 256):
        self.maxsize = maxsize
        self._subscribers: dict[asyncio.Queue, str | None] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the queues live on (the app's lifespan binds it)."""
        self._loop = loop

    @contextlib.asynccontextmanager
    async def subscribe(self, patient: str | None = None):
        """A queue receiving the events of *patient* (all patients when None) until the block exits."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(self.maxsize)
        with self._lock:
            self._subscribers[queue] = patient
        try:
            yield queue
        finally:
            with self._lock:
                self._subscribers.pop(queue, None)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subscribers)

    def _deliver(self, event: dict) -> None:
        with self._lock:
            targets = [q for q, p in self._subscribers.items() if p is None or p == event.get("patient")]
        for queue in targets:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # drop the oldest: a slow dashboard never blocks ingest
            queue.put_nowait(event)

    def publish(self, event: dict) -> None:
        """Send *event* to the subscribers of its patient (thread-safe; a no-op before the loop is bound)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)
