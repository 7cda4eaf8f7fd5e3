"""The `LLMDocument` collection's 15 properties (docs/weaviate.md explains each), how a labelled
example maps onto them and back, and how a live collection's schema is compared with ours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from weaviate.classes.config import DataType, Tokenization, VectorDistances
from weaviate.classes.query import Filter

from ..examples.labelled import LabelledExample
from ..token_count import estimate_text_tokens

VECTOR_NAME = "default"


@dataclass(frozen=True)
class PropertySpec:
    name: str
    data_type: DataType
    why: str
    # FIELD tokenization makes equality filters exact (tenant, ids); None keeps the default
    tokenization: Tokenization | None = None
    searchable: bool = False


# Exactly 15 properties. The per-model outcomes are two parallel arrays (model_ids[i] scored
# model_scores[i]) because Weaviate has no map type and the set of models changes over time.
PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(
        "content",
        DataType.TEXT,
        "the prompt text; re-encoded when the encoder changes, and exported",
        Tokenization.WORD,
        True,
    ),
    PropertySpec(
        "category", DataType.TEXT, "subject area (e.g. MMLU subject), for evaluation slices", Tokenization.FIELD
    ),
    PropertySpec(
        "task_type", DataType.TEXT, "kind of task (qa, code, chat...), for evaluation slices", Tokenization.FIELD
    ),
    PropertySpec(
        "language", DataType.TEXT, "prompt language, so multilingual gaps can be measured", Tokenization.FIELD
    ),
    PropertySpec("token_count", DataType.INT, "estimated prompt tokens, to compare like-sized prompts"),
    PropertySpec(
        "model_ids",
        DataType.TEXT_ARRAY,
        "outcome keys (model id or tier:<name>) scored on this prompt",
        Tokenization.FIELD,
    ),
    PropertySpec("model_scores", DataType.NUMBER_ARRAY, "outcome 0..1 for model_ids[i]: the kNN evidence"),
    PropertySpec(
        "best_model", DataType.TEXT, "the highest-scoring key, for quick inspection and filters", Tokenization.FIELD
    ),
    PropertySpec(
        "label_source", DataType.TEXT, "benchmark / feedback / manual: how the label was made", Tokenization.FIELD
    ),
    PropertySpec(
        "source", DataType.TEXT, "dataset or file it came from; part of the deterministic id", Tokenization.FIELD
    ),
    PropertySpec(
        "source_request_id",
        DataType.TEXT,
        "the logged request a feedback label came from (de-duplication)",
        Tokenization.FIELD,
    ),
    PropertySpec("tenant", DataType.TEXT, "owner tenant; null means shared with every tenant", Tokenization.FIELD),
    PropertySpec("weight", DataType.NUMBER, "how much this example counts in the kNN average"),
    PropertySpec("created_at", DataType.DATE, "first written; kept across re-imports"),
    PropertySpec("updated_at", DataType.DATE, "last written"),
)

PROPERTY_NAMES = tuple(p.name for p in PROPERTIES)

NEIGHBOUR_PROPERTIES = ["model_ids", "model_scores", "weight"]


class SchemaMismatch(Exception):
    """The collection exists but cannot serve this router; the message says what differs."""


def visible_to(tenant: str | None) -> Any:
    shared = Filter.by_property("tenant").is_none(True)
    if tenant is None:
        return shared
    return shared | Filter.by_property("tenant").equal(tenant)


def to_properties(ex: LabelledExample, created_at: datetime, updated_at: datetime) -> dict[str, Any]:
    keys = sorted(ex.outcomes)
    props: dict[str, Any] = {
        "content": ex.content,
        "category": ex.category,
        "task_type": ex.task_type,
        "language": ex.language,
        "token_count": estimate_text_tokens(ex.content),
        "model_ids": keys,
        "model_scores": [float(ex.outcomes[k]) for k in keys],
        "best_model": ex.best_model,
        "label_source": ex.label_source,
        "source": ex.source,
        "source_request_id": ex.source_request_id,
        "tenant": ex.tenant,
        "weight": float(ex.weight),
        "created_at": created_at,
        "updated_at": updated_at,
    }
    # absent, not empty: a null tenant is how "shared" is stored and filtered
    return {k: v for k, v in props.items() if v is not None}


def outcomes_of(props: dict[str, Any]) -> dict[str, float]:
    ids = props.get("model_ids") or []
    scores = props.get("model_scores") or []
    return {str(k): float(v) for k, v in zip(ids, scores, strict=False)}


def from_properties(uuid: str, props: dict[str, Any]) -> LabelledExample:
    def text(name: str) -> str | None:
        value = props.get(name)
        return str(value) if value is not None else None

    return LabelledExample(
        id=uuid,
        content=str(props.get("content") or ""),
        outcomes=outcomes_of(props),
        label_source=text("label_source") or "benchmark",
        source=text("source") or "weaviate",
        category=text("category"),
        task_type=text("task_type"),
        language=text("language"),
        tenant=text("tenant"),
        weight=float(props.get("weight") or 1.0),
        source_request_id=text("source_request_id"),
    )


def schema_differences(config: Any, description: str) -> list[str]:
    """What an existing collection's config lacks for this router, one line per difference."""
    problems: list[str] = []
    have = {p.name: p for p in config.properties}
    for spec in PROPERTIES:
        prop = have.get(spec.name)
        if prop is None:
            problems.append(f"property {spec.name} ({spec.data_type.value}) is missing")
            continue
        if prop.data_type != spec.data_type:
            problems.append(f"property {spec.name} is {prop.data_type.value}, expected {spec.data_type.value}")
        elif spec.tokenization == Tokenization.FIELD and prop.tokenization != Tokenization.FIELD:
            got = prop.tokenization.value if prop.tokenization else None
            problems.append(f"property {spec.name} has tokenization {got}, expected field")
    extra = sorted(set(have) - set(PROPERTY_NAMES))
    if extra:
        problems.append(f"unexpected properties: {', '.join(extra)}")
    vectors = config.vector_config or {}
    vc = vectors.get(VECTOR_NAME)
    if vc is None:
        names = ", ".join(sorted(vectors)) or "none (legacy unnamed vector)"
        problems.append(f"named vector {VECTOR_NAME!r} is missing (has: {names})")
    else:
        vectorizer = getattr(vc.vectorizer.vectorizer, "value", vc.vectorizer.vectorizer)
        if vectorizer != "none":
            problems.append(f"vector {VECTOR_NAME!r} uses vectorizer {vectorizer}, expected none (own vectors)")
        index_type = type(vc.vector_index_config).__name__
        if "HNSW" not in index_type:
            problems.append(f"vector {VECTOR_NAME!r} index is {index_type}, expected hnsw")
        distance = getattr(vc.vector_index_config, "distance_metric", None)
        if distance != VectorDistances.COSINE:
            got = getattr(distance, "value", distance)
            problems.append(f"vector {VECTOR_NAME!r} distance is {got}, expected cosine")
    if not config.inverted_index_config.index_null_state:
        problems.append("invertedIndexConfig.indexNullState is false, expected true (tenant filter)")
    if config.description and "vectors:" in config.description and config.description != description:
        stored = config.description.split("vectors:", 1)[1].strip()
        wanted = description.split("vectors:", 1)[1].strip()
        problems.append(f"stored vectors come from encoder {stored}, this router uses {wanted}")
    return problems
