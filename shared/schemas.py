"""OpenAI-compatible request models, plus the router's `routing` extension.

Requests are validated strictly (a string where a number belongs is a 400, not a coercion);
responses are plain dicts in the OpenAI wire shape, so that upstream answers pass through
without a round trip through models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidRequest, shorten
from .storable_text import check_json_text, check_storable, may_hold_unstorable

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]

POLICY_ALIASES: dict[str, Literal["quality", "cost", "balanced", "latency"] | None] = {
    "auto": None,
    "auto:quality": "quality",
    "auto:cost": "cost",
    "auto:balanced": "balanced",
    "auto:latency": "latency",
}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(_Strict):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart, Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content")
        return self

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)

    def media_parts(self) -> list[InputAudioPart | FilePart]:
        if not isinstance(self.content, list):
            return []
        return [p for p in self.content if isinstance(p, InputAudioPart | FilePart)]


def media_chars(part: InputAudioPart | FilePart) -> int:
    """The characters an audio or file part carries (its base64 data, file name, id): counted toward
    the size limit and the token estimate like text, so they cannot ride along for free."""
    fields = part.input_audio if isinstance(part, InputAudioPart) else part.file
    return sum(len(v) for v in fields.values() if isinstance(v, str))


class FunctionDef(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None


class RoutingOptions(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid")

    policy: Literal["quality", "cost", "balanced", "latency"] | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    min_quality: float | None = Field(default=None, ge=0, le=1)
    allowed_models: list[str] | None = None
    exclude_models: list[str] | None = None
    semantic_cache: bool | None = None
    cache: bool | None = None


# Request fields that do not change what a model generates (left out of the response-cache key).
_NOT_GENERATION = frozenset(
    {
        "messages",
        "model",
        "stream",
        "stream_options",
        "user",
        "routing",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)


class ChatCompletionRequest(_Strict):
    """The body of POST /api/v1/chat/completions (and /route, and jobs).

    The top-level fields are an explicit allow-list (README "Request fields"): what OpenAI's chat
    API takes, passed to OpenAI-compatible upstreams as sent, plus the router's `routing`. Anything
    else is a 400 `Unrecognized request argument supplied`, as OpenAI answers."""

    model_config = ConfigDict(strict=True, extra="forbid")

    messages: list[Message] = Field(min_length=1)
    model: str = "auto"
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = Field(default=None, max_length=64)
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = Field(default=None, max_length=64)
    verbosity: str | None = Field(default=None, max_length=64)
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    safety_identifier: str | None = Field(default=None, max_length=1024)
    functions: list[dict[str, Any]] | None = None  # deprecated by OpenAI for tools, still sent
    function_call: str | dict[str, Any] | None = None
    routing: RoutingOptions | None = None

    @model_validator(mode="after")
    def _rules(self) -> ChatCompletionRequest:
        if self.n is not None and self.n > 1:
            raise ValueError("n > 1 is not supported: the router returns one choice per request")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        return self

    # --- derived views -------------------------------------------------------------------
    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def prompt_text(self) -> str:
        """The text the router judges difficulty by: the last user turn."""
        users = [m for m in self.messages if m.role == "user"]
        last = users[-1].text() if users else self.messages[-1].text()
        return last

    def total_chars(self) -> int:
        """Text plus the data of audio and file parts (what MAX_TOTAL_CHARS bounds)."""
        return sum(len(m.text()) + sum(media_chars(p) for p in m.media_parts()) for m in self.messages)

    def needs_capabilities(self) -> set[str]:
        needs: set[str] = set()
        if self.tools:
            needs.add("tools")
        if self.response_format is not None and self.response_format.type != "text":
            needs.add("json")
        if any(m.has_image() for m in self.messages):
            needs.add("vision")
        return needs

    def generation_params(self) -> dict[str, Any]:
        """Every parameter that changes what a model generates (used by the cache key)."""
        return self.model_dump(
            mode="json",
            exclude_none=True,
            exclude=set(_NOT_GENERATION),
        )


def _loc(err: Any) -> str | None:
    """The field path in OpenAI's style (`messages[0].role`), without pydantic's union-branch names."""
    out = ""
    for part in err.get("loc", ()):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if (
            text in {"str", "int", "float", "bool", "dict", "list", "none"}
            or "[" in text
            or text.startswith(("function-", "tagged-union"))
        ):
            continue
        if text in {"text", "image_url", "input_audio", "file", "refusal"} and out.endswith("]"):
            continue  # discriminator tag of a content part
        out += f".{text}" if out else text
    return out or None


def parse_chat_request(body: bytes | str) -> ChatCompletionRequest:
    """Validate a raw body; every failure becomes an InvalidRequest naming the field."""
    if isinstance(body, bytes | bytearray) and not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="empty_body")
    if isinstance(body, str) and not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="empty_body")
    try:
        req = ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors(include_url=False)[0].get("type") == "json_invalid":
            check_json_text(body)
        raise invalid_from_validation(exc) from None
    if not isinstance(body, bytes | bytearray) or may_hold_unstorable(bytes(body)):
        check_storable(req)
    return req


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    first = errors[0]
    etype = first.get("type", "")
    if etype == "json_invalid":
        return InvalidRequest(f"The body is not valid JSON: {first.get('msg')}", code="invalid_json")
    if etype in {"model_type", "model_attributes_type"} and not first.get("loc"):
        return InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    param = _loc(first)
    if etype == "extra_forbidden" and param and "." not in param and "[" not in param:
        # OpenAI's own wording for a top-level field it does not know
        return InvalidRequest(
            f"Unrecognized request argument supplied: {shorten(param)}", param=shorten(param), code="unknown_parameter"
        )
    msg = first.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    code = "invalid_value"
    if etype == "missing":
        code = "missing_field"
    elif etype.endswith("_type") or etype in {"literal_error", "union_tag_invalid", "union_tag_not_found"}:
        code = "invalid_type"
    if param and param.endswith("n") and "n > 1" in msg:
        code = "unsupported_n"
    elif "n > 1" in msg:
        code, param = "unsupported_n", "n"
    text = f"Invalid '{param}': {msg}." if param else f"Invalid request: {msg}."
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more error(s))"
    return InvalidRequest(text, param=param, code=code)


def check_limits(req: ChatCompletionRequest, max_messages: int, max_total_chars: int) -> None:
    """The size limits every entry point applies (HTTP chat and route, jobs)."""
    if len(req.messages) > max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(req.messages)} > {max_messages}.", param="messages", code="too_many_messages"
        )
    if req.total_chars() > max_total_chars:
        raise InvalidRequest(
            f"The messages hold more than {max_total_chars} characters.", param="messages", code="messages_too_long"
        )
