"""Runs the after-answer hooks on one background task per process (a task per request cost more
than the hooks themselves). A full queue drops the oldest: the hooks are best effort."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from .base import AfterAnswerHook, Answer

log = logging.getLogger(__name__)


class HookRunner:
    def __init__(self, hooks: Sequence[AfterAnswerHook], max_queued: int = 10_000) -> None:
        self.hooks = list(hooks)
        self._queue: deque[Answer] = deque(maxlen=max_queued)
        self._task: asyncio.Task[None] | None = None

    def submit(self, answer: Answer) -> None:
        if not self.hooks:
            return
        self._queue.append(answer)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def drain(self) -> None:
        """Wait for the queued answers, and for work a hook runs on its own tasks (shutdown, tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        for hook in self.hooks:
            drain = getattr(hook, "drain", None)
            if drain is not None:
                await drain()

    async def _run(self) -> None:
        while self._queue:
            answer = self._queue.popleft()
            for hook in self.hooks:
                try:
                    await hook(answer)
                except Exception:
                    log.exception("after-answer hook %s failed", getattr(hook, "name", hook))
