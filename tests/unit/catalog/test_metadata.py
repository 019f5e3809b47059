"""Metadata precedence (admin > upstream > heuristic > default), auto-tagging and hashing."""

from __future__ import annotations

import pytest

from registry.services.catalog_metadata import (
    discovery_hash,
    effective_metadata,
    heuristic_metadata,
)


@pytest.mark.parametrize(
    "name",
    [
        "get_user",
        "list_repos",
        "search_code",
        "read_file",
        "describe_table",
        "GET_x",
        "get-invoice",
    ],
)
def test_heuristic_read_only_prefixes(name: str) -> None:
    assert heuristic_metadata(name) == {"read_only": True}


@pytest.mark.parametrize(
    "name", ["delete_user", "drop_table", "remove_member", "destroy_vm", "delete-everything"]
)
def test_heuristic_destructive_prefixes(name: str) -> None:
    assert heuristic_metadata(name) == {"destructive": True}


@pytest.mark.parametrize("name", ["getter", "add", "create_issue", "listing", "deleted", "echo"])
def test_heuristic_other_names_say_nothing(name: str) -> None:
    assert heuristic_metadata(name) == {}


def test_effective_metadata_heuristic_when_nothing_else() -> None:
    resolved = effective_metadata(name="get_user", annotations=None, admin={})

    assert resolved.metadata.read_only is True
    assert resolved.metadata.destructive is False
    assert resolved.sources == {
        "read_only": "heuristic",
        "destructive": "default",
        "human_approval_required": "default",
        "cost_tier": "default",
    }


def test_effective_metadata_upstream_beats_heuristic() -> None:
    resolved = effective_metadata(
        name="get_and_reset", annotations={"readOnlyHint": False}, admin={}
    )

    assert resolved.metadata.read_only is False
    assert resolved.sources["read_only"] == "upstream"


def test_effective_metadata_upstream_destructive_hint() -> None:
    resolved = effective_metadata(
        name="wipe", annotations={"destructiveHint": True, "idempotentHint": False}, admin={}
    )

    assert resolved.metadata.destructive is True
    assert resolved.sources["destructive"] == "upstream"


def test_effective_metadata_read_only_upstream_is_not_destructive() -> None:
    resolved = effective_metadata(name="delete_cache", annotations={"readOnlyHint": True}, admin={})

    assert (resolved.metadata.read_only, resolved.metadata.destructive) == (True, False)
    assert resolved.sources["destructive"] == "upstream"


def test_effective_metadata_admin_beats_upstream_and_heuristic() -> None:
    resolved = effective_metadata(
        name="delete_user",
        annotations={"destructiveHint": True, "readOnlyHint": False},
        admin={"destructive": False, "human_approval_required": True, "cost_tier": "high"},
    )

    assert resolved.metadata.destructive is False
    assert resolved.metadata.human_approval_required is True
    assert resolved.metadata.cost_tier == "high"
    assert resolved.sources["destructive"] == "admin"
    assert resolved.sources["read_only"] == "upstream"


def test_effective_metadata_admin_none_falls_back() -> None:
    resolved = effective_metadata(name="get_user", annotations=None, admin={"read_only": None})

    assert resolved.sources["read_only"] == "heuristic"


def test_discovery_hash_is_stable_across_key_order() -> None:
    first = discovery_hash(
        name="a",
        description="d",
        input_schema={"type": "object", "properties": {"x": {"type": "string"}}},
        output_schema=None,
        annotations={"readOnlyHint": True, "title": "A"},
    )
    second = discovery_hash(
        name="a",
        description="d",
        input_schema={"properties": {"x": {"type": "string"}}, "type": "object"},
        output_schema=None,
        annotations={"title": "A", "readOnlyHint": True},
    )

    assert first == second
    assert len(first) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"name": "b"},
        {"description": "other"},
        {"input_schema": {"type": "object", "required": ["x"]}},
        {"output_schema": {"type": "object"}},
        {"annotations": {"readOnlyHint": True}},
    ],
)
def test_discovery_hash_changes_with_each_field(change: dict[str, object]) -> None:
    base: dict[str, object] = {
        "name": "a",
        "description": "d",
        "input_schema": {"type": "object"},
        "output_schema": None,
        "annotations": None,
    }

    assert discovery_hash(**{**base, **change}) != discovery_hash(**base)  # type: ignore[arg-type]
