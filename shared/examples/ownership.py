"""Who may write which labelled example, and with what.

The server decides where an example lives: a tenant admin's examples belong to its tenant (source
"api", ids in the tenant's namespace, labelled.example_id), whatever the body says. Examples every
tenant routes with (`shared`), and the starter set among them, are written only by a platform
operator (Role.PLATFORM_ADMIN), who alone may name the source. A weight is bounded, so that no
single example outweighs a neighbourhood, and outcome keys are catalog model ids or tier keys, so
the index's examples x keys storage is bounded by the catalog, not by what a client sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..auth.base import Principal, Role
from ..catalog import Catalog
from ..errors import InvalidRequest, PermissionDenied

API_SOURCE = "api"
MAX_WEIGHT = 10.0
TIER_KEYS = ("tier:frontier", "tier:balanced", "tier:economy")
# an unknown key is echoed in the error only this far
_SHOWN_KEY_CHARS = 80


def outcome_keys(catalog: Catalog) -> frozenset[str]:
    """What an outcome may be keyed by: a catalog model id (enabled or not) or a tier key."""
    return frozenset(m.id for m in catalog) | frozenset(TIER_KEYS)


def check_outcome_keys(outcomes: Mapping[str, float], allowed: frozenset[str], param_prefix: str) -> None:
    for key in outcomes:
        if key not in allowed:
            shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "..."
            raise InvalidRequest(
                f"Invalid example: unknown outcome key '{shown}': use a catalog model id "
                f"(GET /api/v1/models) or a tier key ({', '.join(TIER_KEYS)}).",
                param=f"{param_prefix}outcomes.{key}",
                code="invalid_example",
            )


def placement(principal: Principal, shared: bool, source: str | None) -> tuple[str | None, str]:
    """(tenant, source) of an example `principal` writes; PermissionDenied for what needs the
    platform role."""
    if shared:
        if not principal.has(Role.PLATFORM_ADMIN):
            raise PermissionDenied(
                f"Shared examples (every tenant routes with them) and the starter set need the "
                f"{Role.PLATFORM_ADMIN.value} role; without `shared` the example is your tenant's."
            )
        return None, source or API_SOURCE
    # a tenant's example: the client's `source` names nothing here (it once chose the id)
    return principal.tenant, API_SOURCE


def check_all_outcome_keys(items: Iterable[Mapping[str, float]], catalog: Catalog, batched: bool) -> None:
    allowed = outcome_keys(catalog)
    for n, outcomes in enumerate(items):
        check_outcome_keys(outcomes, allowed, f"examples.{n}." if batched else "")
