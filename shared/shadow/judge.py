"""The pairwise judge: its request (structured output through the ordinary provider path), the
parse of its answer, and the verdict from two presentation orders.

Judges prefer a position (usually the first answer) often enough to matter. Each pair is judged
twice, once as (answer, shadow) and once as (shadow, answer); a model wins only when it wins in
both orders, and every other combination (the orders disagree, or either says tie) is a tie. So
a judge that always picks "A" produces ties, never a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..providers.base import Completion
from ..schemas import ChatCompletionRequest

Winner = Literal["A", "B", "tie"]
Outcome = Literal["answer_better", "shadow_better", "tie", "tie_orders_disagree"]

# Long conversations are cut to keep a judge call's cost bounded; the head of each piece is kept.
MAX_PIECE_CHARS = 12_000
JUDGE_MAX_TOKENS = 300

VERDICT_FORMAT: dict[str, Any] = {
    "name": "pairwise_verdict",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "One or two sentences: why."},
            "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        },
        "required": ["reason", "winner"],
        "additionalProperties": False,
    },
}

INSTRUCTIONS = (
    "You are an impartial judge of AI assistant answers. You see a conversation and two candidate "
    "answers to its last turn, A and B. Decide which answer better serves the user: correct, "
    "complete, helpful, and following the user's instructions. Ignore length and style unless they "
    "matter to the user, and do not let the order of the answers influence you. Answer 'tie' when "
    'neither is clearly better. Reply with JSON only: {"reason": "...", "winner": "A" | "B" | "tie"}.'
)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PIECE_CHARS else text[:MAX_PIECE_CHARS] + " [...]"


def conversation_text(req: ChatCompletionRequest) -> str:
    return "\n\n".join(f"[{m.role}]\n{_cut(m.text())}" for m in req.messages)


def judge_request(original: ChatCompletionRequest, first: str, second: str, judge_model: str) -> ChatCompletionRequest:
    """The judge's request for one order: `first` is shown as A, `second` as B."""
    content = (
        f"<conversation>\n{conversation_text(original)}\n</conversation>\n\n"
        f"<answer_A>\n{_cut(first)}\n</answer_A>\n\n<answer_B>\n{_cut(second)}\n</answer_B>"
    )
    return ChatCompletionRequest.model_validate(
        {
            "model": judge_model,
            "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": content}],
            "temperature": 0,
            "max_tokens": JUDGE_MAX_TOKENS,
            "response_format": {"type": "json_schema", "json_schema": VERDICT_FORMAT},
        }
    )


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_winner(completion: Completion) -> Winner | None:
    """The judge's choice, or None when its answer is not the verdict object."""
    choices = completion.get("choices") or []
    text = ((choices[0].get("message") or {}).get("content") or "") if choices else ""
    match = _OBJECT.search(text)  # a model that wraps the JSON in a code fence is still read
    if match is None:
        return None
    try:
        data = orjson.loads(match.group(0))
    except orjson.JSONDecodeError:
        return None
    winner = data.get("winner") if isinstance(data, dict) else None
    if isinstance(winner, str) and winner.strip().upper() in ("A", "B"):
        return "A" if winner.strip().upper() == "A" else "B"
    if isinstance(winner, str) and winner.strip().lower() == "tie":
        return "tie"
    return None


@dataclass(frozen=True)
class Verdict:
    answer_outcome: float  # 1 the answering model was better, 0 worse, 0.5 tie
    shadow_outcome: float
    outcome: Outcome

    @property
    def orders_agree(self) -> bool:
        return self.outcome != "tie_orders_disagree"


def combine(answer_first: Winner, shadow_first: Winner) -> Verdict:
    """The verdict from both orders: `answer_first` judged (A=answer, B=shadow), `shadow_first`
    judged (A=shadow, B=answer)."""
    as_models = {"A": "answer", "B": "shadow", "tie": "tie"}
    swapped = {"A": "shadow", "B": "answer", "tie": "tie"}
    one, two = as_models[answer_first], swapped[shadow_first]
    if one != two:
        return Verdict(0.5, 0.5, "tie_orders_disagree")
    if one == "answer":
        return Verdict(1.0, 0.0, "answer_better")
    if one == "shadow":
        return Verdict(0.0, 1.0, "shadow_better")
    return Verdict(0.5, 0.5, "tie")
