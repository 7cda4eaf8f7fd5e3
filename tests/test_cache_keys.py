"""Response-cache keys: a request that differs in any single thing that changes the answer
never shares an entry; identical requests do."""

from __future__ import annotations

import copy
from itertools import combinations
from typing import Any

import pytest

from shared.cache.keys import response_cache_key
from shared.cache.semantic import bucket_key
from shared.schemas import ChatCompletionRequest

BASE: dict[str, Any] = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three primes."},
    ],
    "temperature": 0,
}

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}

# name -> how the variant differs from BASE (one thing each)
VARIANTS: dict[str, Any] = {
    "temperature": {"temperature": 0.2},
    "top_p": {"top_p": 0.5},
    "max_tokens": {"max_tokens": 64},
    "max_completion_tokens": {"max_completion_tokens": 64},
    "stop": {"stop": ["\n"]},
    "stop_str": {"stop": "\n"},
    "seed": {"seed": 7},
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tool_choice": "required"},
    "tool_choice_named": {"tool_choice": {"type": "function", "function": {"name": "lookup"}}},
    "response_format": {"response_format": {"type": "json_object"}},
    "response_format_schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    },
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 3},
    "parallel_tool_calls": {"parallel_tool_calls": False},
    "model": {"model": "gemini-2.5-flash"},
    "policy_alias": {"model": "auto:cost"},
    "routing_policy": {"routing": {"policy": "quality"}},
    "routing_allowed": {"routing": {"allowed_models": ["small"]}},
    "messages_content": {"messages": [BASE["messages"][0], {"role": "user", "content": "Name four primes."}]},
    "messages_system": {"messages": [{"role": "system", "content": "Be verbose."}, BASE["messages"][1]]},
    "messages_role": {"messages": [{"role": "developer", "content": "You are terse."}, BASE["messages"][1]]},
    "messages_extra_turn": {
        "messages": [
            *BASE["messages"],
            {"role": "assistant", "content": "2, 3, 5"},
            {"role": "user", "content": "More"},
        ]
    },
    "messages_name": {"messages": [BASE["messages"][0], {**BASE["messages"][1], "name": "alice"}]},
    "messages_parts": {
        "messages": [BASE["messages"][0], {"role": "user", "content": [{"type": "text", "text": "Name three primes."}]}]
    },
}


def req(**changes: Any) -> ChatCompletionRequest:
    body = copy.deepcopy(BASE)
    body.update(copy.deepcopy(changes))
    return ChatCompletionRequest.model_validate(body)


def test_identical_requests_share_a_key() -> None:
    assert response_cache_key(req(), "acme") == response_cache_key(req(), "acme")
    # neither the transport (stream) nor the caller's end-user id changes the answer
    assert response_cache_key(req(stream=True, stream_options={"include_usage": True}), "acme") == (
        response_cache_key(req(), "acme")
    )
    assert response_cache_key(req(user="u-1"), "acme") == response_cache_key(req(), "acme")
    # cache opt-in flags decide whether to cache, not what the answer is
    assert response_cache_key(req(routing={"cache": True}), "acme") == response_cache_key(req(), "acme")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_one_changed_parameter_changes_the_key(name: str) -> None:
    assert response_cache_key(req(**VARIANTS[name]), "acme") != response_cache_key(req(), "acme")


def test_tenant_is_in_the_key() -> None:
    assert response_cache_key(req(), "acme") != response_cache_key(req(), "globex")
    assert response_cache_key(req(), "acme") != response_cache_key(req(), None)


def test_all_variants_are_pairwise_distinct() -> None:
    keys = {name: response_cache_key(req(**v), "acme") for name, v in VARIANTS.items()}
    keys["base"] = response_cache_key(req(), "acme")
    for (a, ka), (b, kb) in combinations(keys.items(), 2):
        assert ka != kb, f"{a} and {b} share a cache key"


@pytest.mark.parametrize("name", sorted(n for n in VARIANTS if not n.startswith("messages_content")))
def test_semantic_buckets_separate_every_parameter_too(name: str) -> None:
    variant = bucket_key(req(**VARIANTS[name]), "acme", "hashing")
    if name == "messages_extra_turn":
        assert variant is None  # multi-turn prompts never take part
        return
    if name == "messages_parts":  # the same text as a content part is the same prompt
        assert variant == bucket_key(req(), "acme", "hashing")
        return
    assert variant is not None
    assert variant != bucket_key(req(), "acme", "hashing")


def test_semantic_buckets_are_per_tenant_and_encoder() -> None:
    base = bucket_key(req(), "acme", "hashing")
    assert base is not None
    assert base == bucket_key(req(), "acme", "hashing")
    assert base != bucket_key(req(), "globex", "hashing")
    assert base != bucket_key(req(), "acme", "vertex:text-embedding-005")
    # the user prompt is compared by vector, not hashed into the bucket
    assert base == bucket_key(req(**VARIANTS["messages_content"]), "acme", "hashing")
