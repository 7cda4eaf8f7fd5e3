"""Keep each answered prompt (its vector, and its text where allowed) so that feedback on the
request can later become a labelled example (shared/examples/feedback_loop.py)."""

from __future__ import annotations

from ...examples.feedback_loop import FeedbackExamples
from .base import Answer, HookDeps


class KeepPromptForFeedback:
    name = "feedback_prompts"

    def __init__(self, feeder: FeedbackExamples) -> None:
        self.feeder = feeder

    async def __call__(self, answer: Answer) -> None:
        await self.feeder.remember(
            answer.request_id, answer.tenant, answer.request.prompt_text(), answer.decision.vector
        )


def build(deps: HookDeps) -> KeepPromptForFeedback | None:
    return KeepPromptForFeedback(deps.feedback_examples) if deps.settings.feedback_to_examples else None
