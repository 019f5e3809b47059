"""Pure functions of the catalog: discovery fingerprints and metadata precedence.

Precedence of each governance value (design 003 "Sources of Metadata"): an admin-set value wins
over the upstream's MCP annotations (``readOnlyHint`` → ``read_only``, ``destructiveHint`` →
``destructive``), which win over name heuristics (``get_``/``list_``/``search_``/``read_``/
``describe_`` → read-only; ``delete_``/``drop_``/``remove_``/``destroy_`` → destructive), which
win over the defaults (``False`` / ``None``). Admin values are stored apart from the effective
ones, so the effective values can be recomputed whenever the upstream changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packages.models.tools import METADATA_FIELDS, MetadataSource, ToolMetadata

READ_ONLY_PREFIXES = ("get", "list", "search", "read", "describe")
DESTRUCTIVE_PREFIXES = ("delete", "drop", "remove", "destroy")
_SEPARATORS = ("_", "-")

# MCP annotation -> governance field it sets.
_ANNOTATION_FIELDS = {"readOnlyHint": "read_only", "destructiveHint": "destructive"}
_DEFAULTS: dict[str, Any] = {
    "read_only": False,
    "destructive": False,
    "human_approval_required": False,
    "cost_tier": None,
}


def discovery_hash(
    *,
    name: str,
    description: str | None,
    input_schema: Mapping[str, Any],
    output_schema: Mapping[str, Any] | None,
    annotations: Mapping[str, Any] | None,
) -> str:
    """A stable sha256 of the canonical JSON of what the upstream says about a tool."""
    canonical = json.dumps(
        {
            "name": name,
            "description": description,
            "inputSchema": input_schema,
            "outputSchema": output_schema,
            "annotations": annotations,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _starts_with(name: str, prefixes: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(lowered.startswith(prefix + sep) for prefix in prefixes for sep in _SEPARATORS)


def heuristic_metadata(name: str) -> dict[str, Any]:
    """The governance values a tool's name suggests (only the fields it says something about)."""
    if _starts_with(name, READ_ONLY_PREFIXES):
        return {"read_only": True}
    if _starts_with(name, DESTRUCTIVE_PREFIXES):
        return {"destructive": True}
    return {}


def upstream_metadata(annotations: Mapping[str, Any] | None) -> dict[str, Any]:
    """The governance values the upstream's MCP annotations state explicitly."""
    values: dict[str, Any] = {}
    for hint, field in _ANNOTATION_FIELDS.items():
        value = (annotations or {}).get(hint)
        if isinstance(value, bool):
            values[field] = value
    # MCP: destructiveHint is meaningful only when readOnlyHint is false; a read-only tool
    # does not destroy anything.
    if values.get("read_only") is True and "destructive" not in values:
        values["destructive"] = False
    return values


@dataclass(frozen=True)
class EffectiveMetadata:
    metadata: ToolMetadata
    sources: dict[str, MetadataSource]


def effective_metadata(
    *, name: str, annotations: Mapping[str, Any] | None, admin: Mapping[str, Any]
) -> EffectiveMetadata:
    """Resolve every governance field by precedence: admin > upstream > heuristic > default."""
    layers: tuple[tuple[MetadataSource, Mapping[str, Any]], ...] = (
        ("admin", {k: v for k, v in admin.items() if v is not None}),
        ("upstream", upstream_metadata(annotations)),
        ("heuristic", heuristic_metadata(name)),
    )
    values: dict[str, Any] = {}
    sources: dict[str, MetadataSource] = {}
    for field in METADATA_FIELDS:
        values[field] = _DEFAULTS[field]
        sources[field] = "default"
        for source, layer in layers:
            if field in layer:
                values[field] = layer[field]
                sources[field] = source
                break
    return EffectiveMetadata(metadata=ToolMetadata(**values), sources=sources)
