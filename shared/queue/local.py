"""An in-process queue with Service Bus delivery semantics, for the local host.

At least once: a message whose handler raises is delivered again (delivery_count + 1) until
max_delivery_count, then it is dead-lettered, as Service Bus does. Duplicate detection drops
a second send of the same message_id within the detection window, as a queue with
requiresDuplicateDetection does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .base import OutgoingMessage

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    queue: str
    body: bytes
    message_id: str
    correlation_id: str | None
    application_properties: dict[str, Any]
    content_type: str | None
    reply_to: str | None
    delivery_count: int = 1
    sequence_number: int = 0
    enqueued_at: float = field(default_factory=time.time)
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


Handler = Callable[[Delivery], Awaitable[None]]
DeadLetterHook = Callable[[Delivery], Awaitable[None]]


class LocalBus:
    kind = "local"

    def __init__(
        self,
        *,
        max_delivery_count: int = 10,
        redelivery_delay_s: float = 0.05,
        duplicate_window_s: float = 600.0,
    ) -> None:
        self.max_delivery_count = max_delivery_count
        self.redelivery_delay_s = redelivery_delay_s
        self.duplicate_window_s = duplicate_window_s
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._seen: dict[str, float] = {}
        self._seq = 0
        self._handlers: dict[str, tuple[Handler, int]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self.dead_letters: dict[str, list[Delivery]] = {}
        self.sent: dict[str, list[Delivery]] = {}
        self._dead_letter_hooks: list[DeadLetterHook] = []
        self._inflight = 0

    def _queue(self, name: str) -> asyncio.Queue[Delivery]:
        if name not in self._queues:
            self._queues[name] = asyncio.Queue()
        return self._queues[name]

    async def send(self, queue: str, message: OutgoingMessage) -> None:
        now = time.monotonic()
        key = f"{queue}/{message.message_id}"
        seen = self._seen.get(key)
        if seen is not None and now - seen < self.duplicate_window_s:
            log.info("duplicate message %s dropped by duplicate detection", message.message_id)
            return
        self._seen[key] = now
        self._seq += 1
        delivery = Delivery(
            queue=queue,
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            application_properties=dict(message.application_properties),
            content_type=message.content_type,
            reply_to=message.reply_to,
            sequence_number=self._seq,
        )
        self.sent.setdefault(queue, []).append(delivery)
        await self._queue(queue).put(delivery)

    def subscribe(self, queue: str, handler: Handler, *, concurrency: int = 16) -> None:
        self._handlers[queue] = (handler, concurrency)

    def on_dead_letter(self, hook: DeadLetterHook) -> None:
        self._dead_letter_hooks.append(hook)

    def start(self) -> None:
        for queue, (handler, concurrency) in self._handlers.items():
            for _ in range(concurrency):
                self._workers.append(asyncio.create_task(self._work(queue, handler)))

    async def _work(self, queue: str, handler: Handler) -> None:
        q = self._queue(queue)
        while True:
            delivery = await q.get()
            self._inflight += 1
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(q, delivery, exc)
            finally:
                self._inflight -= 1
                q.task_done()

    async def _failed(self, q: asyncio.Queue[Delivery], d: Delivery, exc: Exception) -> None:
        if d.delivery_count >= self.max_delivery_count:
            d.dead_letter_reason = "MaxDeliveryCountExceeded"
            d.dead_letter_description = f"{type(exc).__name__}: {exc}"[:1000]
            self.dead_letters.setdefault(d.queue, []).append(d)
            log.error("message %s dead-lettered after %d deliveries", d.message_id, d.delivery_count)
            for hook in self._dead_letter_hooks:
                try:
                    await hook(d)
                except Exception:
                    log.exception("dead-letter hook failed")
            return
        d.delivery_count += 1
        await asyncio.sleep(self.redelivery_delay_s)
        await q.put(d)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every queue is empty and no handler runs (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._inflight == 0 and all(q.empty() for q in self._queues.values()):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("local bus did not drain")

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()


_bus: LocalBus | None = None


def get_local_bus() -> LocalBus:
    """The process's local bus: the jobs API sends to it, the local host delivers from it."""
    global _bus
    if _bus is None:
        _bus = LocalBus()
    return _bus
