"""VertexEmbeddingEncoder through the real google-genai SDK, against the fake Vertex AI server,
and routing decisions made with it (ENCODER=vertex)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import google.oauth2.credentials
import httpx
import numpy as np
import pytest

from shared.composition.assemble import build_encoder
from shared.composition.services import Services
from shared.config import Settings
from shared.encoders.base import AsyncEncoder
from shared.encoders.vertex import (
    MAX_TEXT_BYTES,
    MAX_TEXTS_PER_REQUEST,
    MAX_TOKENS_PER_REQUEST,
    VertexEmbeddingEncoder,
    clip,
    token_estimate,
)
from shared.errors import ProviderNotConfigured, UpstreamUnavailable
from shared.examples.labelled import LabelledExample
from shared.index.local import LocalIndex
from tests.fakes.vertex import (
    EMBED_MAX_REQUEST_TOKENS,
    FakeVertex,
    count_tokens,
    embedding_of,
    serve,
    service_account_info,
)

MODEL = "text-embedding-005"


def unit(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def vertex_settings(fake: FakeVertex, **kw: Any) -> Settings:
    return Settings(
        environment="test",
        auth_enabled=False,
        database_enabled=False,
        encoder="vertex",
        google_cloud_project_id="test-project",
        vertex_ai_location="us-central1",
        vertex_ai_base_url=fake.url,
        **kw,
    )


def static_credentials() -> Any:
    # a static token: the SDK never refreshes it, so nothing leaves the machine
    return google.oauth2.credentials.Credentials(token="test-token")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVertex]:
    yield from serve(FakeVertex(hang_s=5.0))


@pytest.fixture(autouse=True)
def _clean(fake: FakeVertex) -> None:
    fake.reset()


@pytest.fixture
async def encoder(fake: FakeVertex) -> AsyncIterator[VertexEmbeddingEncoder]:
    enc = VertexEmbeddingEncoder.from_settings(vertex_settings(fake), credentials=static_credentials())
    yield enc
    await enc.aclose()


# --- vectors -----------------------------------------------------------------------------------


async def test_rows_have_the_dimension_unit_norm_and_the_order_of_the_texts(
    encoder: VertexEmbeddingEncoder, fake: FakeVertex
) -> None:
    texts = ["How do I reverse a linked list?", "Reverse a linked list in place", "Best pasta for a carbonara"]
    vectors = await encoder.aencode(texts)

    assert isinstance(encoder, AsyncEncoder)
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # each row is the service's vector for that text (the fake does not send unit rows)
    for row, text in zip(vectors, texts, strict=True):
        assert np.allclose(row, unit(embedding_of(text, 256)), atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]

    rec = fake.last
    assert len(fake.requests) == 1
    assert rec.path.endswith(f"/projects/test-project/locations/us-central1/publishers/google/models/{MODEL}:predict")
    assert rec.headers["authorization"] == "Bearer test-token"
    assert "x-llm-router-connect-timeout" not in rec.headers  # consumed by the transport
    assert [i["content"] for i in rec.instances] == texts
    assert {i["task_type"] for i in rec.instances} == {"SEMANTIC_SIMILARITY"}
    assert rec.parameters == {"outputDimensionality": 256, "autoTruncate": True}


async def test_the_name_carries_the_model_and_the_dimension(fake: FakeVertex) -> None:
    enc = VertexEmbeddingEncoder.from_settings(
        vertex_settings(fake, vertex_embedding_dim=64), credentials=static_credentials()
    )
    try:
        assert enc.name == "vertex-text-embedding-005-d64"
        assert enc.dim == 64
        vectors = await enc.aencode(["a short prompt"])
        assert vectors.shape == (1, 64)
        assert fake.last.parameters["outputDimensionality"] == 64
    finally:
        await enc.aclose()
    default = VertexEmbeddingEncoder.from_settings(vertex_settings(fake), credentials=static_credentials())
    assert default.name == "vertex-text-embedding-005-d256"
    await default.aclose()


async def test_more_texts_than_a_request_takes_go_in_several_requests(
    encoder: VertexEmbeddingEncoder, fake: FakeVertex
) -> None:
    texts = [f"question number {i} about topic {i % 7}" for i in range(MAX_TEXTS_PER_REQUEST * 2 + 17)]
    vectors = await encoder.aencode(texts)

    sizes = sorted(len(r.instances) for r in fake.requests)
    assert sizes == [17, MAX_TEXTS_PER_REQUEST, MAX_TEXTS_PER_REQUEST]
    assert all(r.behaviour == "ok" for r in fake.requests)
    sent = sorted(i["content"] for r in fake.requests for i in r.instances)
    assert sent == sorted(texts)
    # concurrent requests, rows still in the order of the texts
    for i in (0, 249, 250, 499, 500, len(texts) - 1):
        assert np.allclose(vectors[i], unit(embedding_of(texts[i], 256)), atol=1e-5)


async def test_long_texts_are_batched_by_tokens_and_clipped(encoder: VertexEmbeddingEncoder, fake: FakeVertex) -> None:
    # 700 words (~4.5 KB) each: 250 of them would break the service's 20,000-token request limit
    texts = [" ".join(f"w{i}x{j}" for j in range(700)) for i in range(40)]
    huge = "lorem ipsum " * 20_000
    vectors = await encoder.aencode([*texts, huge])

    assert len(fake.requests) > 1
    for rec in fake.requests:
        contents = [i["content"] for i in rec.instances]
        assert sum(count_tokens(c) for c in contents) <= EMBED_MAX_REQUEST_TOKENS
        assert sum(token_estimate(c) for c in contents) <= MAX_TOKENS_PER_REQUEST
        assert all(len(c.encode()) <= MAX_TEXT_BYTES for c in contents)
    assert all(r.behaviour == "ok" for r in fake.requests)
    sent_huge = next(i["content"] for r in fake.requests for i in r.instances if i["content"].startswith("lorem"))
    assert huge.startswith(sent_huge) and len(sent_huge.encode()) > MAX_TEXT_BYTES - 16
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_clip_cuts_on_a_character_boundary() -> None:
    text = "é" * 5_000  # two bytes each
    cut = clip(text, 1_001)
    assert cut == "é" * 500
    assert clip("short", 1_001) == "short"


async def test_blank_texts_get_zero_rows_and_are_not_sent(encoder: VertexEmbeddingEncoder, fake: FakeVertex) -> None:
    vectors = await encoder.aencode(["", "tell me a joke", "   "])
    assert vectors.shape == (3, 256)
    assert not vectors[0].any() and not vectors[2].any()
    assert np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert [i["content"] for i in fake.last.instances] == ["tell me a joke"]
    fake.reset()
    assert (await encoder.aencode(["", " "])).shape == (2, 256)
    assert (await encoder.aencode([])).shape == (0, 256)
    assert fake.requests == []


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "wording"),
    [(503, "HTTP 503"), (500, "HTTP 500"), (429, "HTTP 429"), (400, "HTTP 400"), (403, "GOOGLE_APPLICATION")],
)
async def test_api_errors_are_upstream_unavailable(
    encoder: VertexEmbeddingEncoder, fake: FakeVertex, status: int, wording: str
) -> None:
    fake.fail(status, "scripted failure")
    with pytest.raises(UpstreamUnavailable) as info:
        await encoder.aencode(["hello"])
    assert wording in info.value.message
    assert MODEL in info.value.message
    assert "test-token" not in info.value.message


async def test_one_failed_batch_fails_the_call_with_a_plain_error(
    encoder: VertexEmbeddingEncoder, fake: FakeVertex
) -> None:
    # The failure rides in the first batch's text, not the fake's queue: the batches this failure
    # cancels may reach the server after the test ends, and must not take the next test's script.
    texts = ["[fake:503]"] + [f"text {i}" for i in range(1, MAX_TEXTS_PER_REQUEST * 3)]
    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
        await encoder.aencode(texts)


async def test_a_hanging_service_times_out(fake: FakeVertex) -> None:
    enc = VertexEmbeddingEncoder.from_settings(vertex_settings(fake), credentials=static_credentials(), timeout_s=0.3)
    try:
        with pytest.raises(UpstreamUnavailable, match="timed out"):
            await enc.aencode(["hello [fake:hang:3]"])
    finally:
        await enc.aclose()


async def test_a_refused_connection_names_the_endpoint() -> None:
    settings = Settings(google_cloud_project_id="test-project", vertex_ai_base_url="http://127.0.0.1:9")
    enc = VertexEmbeddingEncoder.from_settings(settings, credentials=static_credentials())
    try:
        with pytest.raises(UpstreamUnavailable, match=r"127\.0\.0\.1:9"):
            await enc.aencode(["hello"])
    finally:
        await enc.aclose()


def test_needs_a_project() -> None:
    with pytest.raises(ProviderNotConfigured, match="GOOGLE_CLOUD_PROJECT_ID"):
        VertexEmbeddingEncoder.from_settings(Settings(google_cloud_project_id=None), credentials=static_credentials())


async def test_encoder_vertex_setting_builds_it_from_credentials_json(fake: FakeVertex) -> None:

    info = service_account_info()
    settings = vertex_settings(fake, vertex_embedding_dim=128, google_application_credentials_json=json.dumps(info))
    enc = build_encoder(settings)
    try:
        assert isinstance(enc, VertexEmbeddingEncoder)
        assert isinstance(enc, AsyncEncoder)
        assert (enc.name, enc.dim) == ("vertex-text-embedding-005-d128", 128)
    finally:
        await enc.aclose()  # type: ignore[union-attr]


# --- routing with ENCODER=vertex -----------------------------------------------------------------

HARD = [
    "Prove that the square root of two is irrational using contradiction",
    "Prove that there are infinitely many prime numbers using contradiction",
    "Prove the fundamental theorem of algebra using complex analysis",
]
EASY = [
    "Say hello to my friend in a cheerful tone",
    "Say good morning to my team in a cheerful tone",
    "Say thanks to the waiter in a cheerful tone",
]


@pytest.fixture
async def vertex_ctx(make_context: Callable[..., Any], fake: FakeVertex, encoder: VertexEmbeddingEncoder) -> Services:
    examples = [LabelledExample(t, {"big": 1.0, "small": 0.0}, source="test") for t in HARD]
    examples += [LabelledExample(t, {"big": 1.0, "small": 1.0}, source="test") for t in EASY]
    index = LocalIndex(encoder.dim)
    await index.upsert(examples, await encoder.aencode([ex.content for ex in examples]))
    fake.reset()
    ctx: Services = await make_context(settings=vertex_settings(fake), encoder=encoder, index=index, priors={})
    return ctx


def example_ids() -> dict[str, set[str]]:
    examples = [LabelledExample(t, {"big": 1.0, "small": 0.0}, source="test") for t in HARD]
    examples += [LabelledExample(t, {"big": 1.0, "small": 1.0}, source="test") for t in EASY]
    return {"hard": {ex.id for ex in examples[:3]}, "easy": {ex.id for ex in examples[3:]}}


@pytest.fixture
async def vertex_client(vertex_ctx: Services) -> AsyncIterator[httpx.AsyncClient]:
    import function_app
    from devtools.localhost import build_app
    from shared.queue.local import LocalBus

    app = build_app(function_app.app, bus=LocalBus(), timers=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router.test") as c:
        yield c


def route_body(prompt: str) -> dict[str, Any]:
    return {"model": "auto:cost", "messages": [{"role": "user", "content": prompt}]}


async def test_route_finds_neighbours_through_vertex_embeddings(
    vertex_client: httpx.AsyncClient, vertex_ctx: Services, fake: FakeVertex
) -> None:
    ids = example_ids()
    hard_prompt = "Prove that the cube root of two is irrational using contradiction"
    r = await vertex_client.post("/api/v1/route", json=route_body(hard_prompt))
    assert r.status_code == 200, r.text
    hard = r.json()
    assert hard["index"] == "ok"
    assert hard["neighbours"] and {n["id"] for n in hard["neighbours"]} <= ids["hard"] | ids["easy"]
    assert hard["neighbours"][0]["id"] in ids["hard"]
    # the prompt was embedded by the service, once
    assert [i["content"] for r_ in fake.requests for i in r_.instances] == [hard_prompt]

    r = await vertex_client.post("/api/v1/route", json=route_body("Say hello to my neighbour in a cheerful tone"))
    easy = r.json()
    assert easy["neighbours"][0]["id"] in ids["easy"]

    def small_quality(decision: dict[str, Any]) -> float:
        return float(next(c["predicted_quality"] for c in decision["candidates"] if c["model"] == "small"))

    # the neighbours are the evidence: the economy model is predicted worse on the proof
    assert small_quality(hard) < small_quality(easy)


async def test_an_encoder_failure_routes_on_priors(
    vertex_client: httpx.AsyncClient, vertex_ctx: Services, fake: FakeVertex
) -> None:
    fake.fail(503, "embeddings backend down")
    r = await vertex_client.post("/api/v1/route", json=route_body("Prove that e is irrational"))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["index"] == "index unavailable"
    assert d["neighbours"] == []
    assert d["model"] in {"big", "small"}
    by_model = {c["model"]: c for c in d["candidates"]}
    # no neighbour evidence: each estimate is its prior (the catalog's, shifted per prompt by the
    # difficulty prior, which needs no index)
    assert by_model["big"]["evidence"] == by_model["small"]["evidence"] == 0
    assert by_model["big"]["predicted_quality"] > by_model["small"]["predicted_quality"]
    assert fake.last.behaviour == "error"
