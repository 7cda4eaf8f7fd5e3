"""Text PostgreSQL can store: no NUL characters and no lone UTF-16 surrogates.

A caller's string that PostgreSQL refuses would fail the row that carries it (the request log, a
job, feedback) long after the caller got an answer; so every request body and query parameter is
checked at the edge (`check_storable`: a 400 naming the field), and anything written to the
dead-letter table is first made storable (`storable`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from .errors import InvalidRequest

_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
_INT64 = 2**63


# In JSON text a NUL or a surrogate can only arrive as a \u0000 / \uD800-\uDFFF escape (or a raw
# NUL, which is invalid JSON anyway); a body without such an escape needs no walk.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00")


def may_hold_unstorable(body: bytes) -> bool:
    """A cheap pre-filter on the raw JSON: False means every string in it is storable."""
    return (b"\\u" in body and _SUSPECT_ESCAPE.search(body) is not None) or b"\x00" in body


def is_storable(text: str) -> bool:
    if "\x00" in text:
        return False
    return text.isascii() or _SURROGATE.search(text) is None


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def unstorable_path(value: Any, path: str = "") -> str | None:
    """The path (`messages[0].content`, `metadata.k`) of the first string PostgreSQL would refuse,
    '' for the value itself, or None when everything can be stored. A bad dict key names its dict."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return where
        elif isinstance(item, BaseModel):
            fields = dict(item.__dict__)
            fields.update(item.__pydantic_extra__ or {})
            stack.extend((v, _child(where, k)) for k, v in reversed(fields.items()))
        elif isinstance(item, dict):
            for k in item:
                if isinstance(k, str) and not is_storable(k):
                    return where
            stack.extend((v, _child(where, str(k))) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, _child(where, i)) for i, v in reversed(list(enumerate(item))))
    return None


def check_storable(value: Any, path: str = "") -> None:
    """Raise a 400 naming the first field whose text holds NUL or a lone surrogate."""
    where = unstorable_path(value, path)
    if where is None:
        return
    raise InvalidRequest(
        f"Invalid '{where or 'body'}': text must not contain NUL (\\u0000) or unpaired surrogate characters.",
        param=where or None,
        code="invalid_text",
    )


def check_json_text(body: bytes | str) -> None:
    """For a body a strict JSON parser refused: when the only fault is a lone surrogate escape (the
    standard library's parser accepts those), raise the 400 that names its field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return
    check_storable(data)


def storable(value: Any) -> Any:
    """A JSON-ready copy PostgreSQL accepts: NUL and lone surrogates become U+FFFD, integers beyond
    64 bits become strings, anything else unknown becomes its str()."""
    if isinstance(value, str):
        return value if is_storable(value) else _SURROGATE.sub(_REPLACEMENT, value.replace("\x00", _REPLACEMENT))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return storable(str(value))
