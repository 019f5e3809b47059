"""The gateway's view of the catalog: argument validation messages name the failing field."""

from __future__ import annotations

from typing import Any

import pytest

from registry.gateway.catalog import CatalogTool, ToolCatalog
from registry.gateway.policy import ListChangedScanner


class _NoDatabase(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None


def make_tool(schema: dict[str, Any], *, version: int = 1) -> CatalogTool:
    return CatalogTool(
        id="t1",
        server_id="s1",
        name="add",
        title=None,
        description=None,
        input_schema=schema,
        output_schema=None,
        annotations=None,
        allowed_roles=(),
        allowed_groups=(),
        read_only=False,
        destructive=False,
        human_approval_required=False,
        version=version,
    )


SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
        "opts": {
            "type": "object",
            "properties": {"mode": {"enum": ["fast", "slow"]}},
            "required": ["mode"],
            "additionalProperties": False,
        },
    },
    "required": ["a", "b"],
}


@pytest.fixture
def catalog() -> ToolCatalog:
    return ToolCatalog(_NoDatabase())  # type: ignore[arg-type]  # no queries in these tests


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": 1, "b": 2}, None),
        ({"a": 1}, "missing required field 'b'"),
        (None, "missing required field 'a'"),
        ({"a": "x", "b": 2}, "field 'a' must be of type integer"),
        ({"a": 1, "b": 2, "opts": {}}, "missing required field 'opts.mode'"),
        ({"a": 1, "b": 2, "opts": {"mode": "x"}}, "field 'opts.mode' does not satisfy 'enum'"),
        (
            {"a": 1, "b": 2, "opts": {"mode": "fast", "extra": 1}},
            "field 'opts.extra' is not allowed",
        ),
        ([1, 2], "field '(arguments)' must be of type object"),
    ],
)
def test_argument_error_names_field(
    catalog: ToolCatalog, arguments: Any, message: str | None
) -> None:
    error = catalog.argument_error(make_tool(SCHEMA), arguments)

    expected = None if message is None else f"Invalid arguments for tool 'add': {message}"
    assert error == expected


def test_argument_error_invalid_schema_not_enforced(catalog: ToolCatalog) -> None:
    tool = make_tool({"type": "object", "properties": {"a": {"type": "no-such-type"}}})

    assert catalog.argument_error(tool, {"a": 1}) is None


def test_argument_error_validator_follows_version(catalog: ToolCatalog) -> None:
    first = make_tool({"type": "object", "required": ["a"]}, version=1)
    second = make_tool({"type": "object"}, version=2)

    assert catalog.argument_error(first, {}) is not None
    assert catalog.argument_error(second, {}) is None


@pytest.mark.parametrize(
    "chunks",
    [
        [b'data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'],
        [b'data: {"jsonrpc":"2.0","method":"notifications/to', b'ols/list_changed"}\n\n'],
        [b"data: {", b'"method":"notifications/tools/', b"list_", b'changed"}\n\n'],
        [b'data: {"jsonrpc": "2.0", "method" : ', b'"notifications/tools/list_changed"}\n\n'],
        [b'data: {"method":"notifications/tools/list_changed"}\n\n', b"data: {}\n\n" * 3],
    ],
)
def test_list_changed_scanner_spots_split_notifications(chunks: list[bytes]) -> None:
    scanner = ListChangedScanner()

    seen = [scanner.feed(chunk) for chunk in chunks]

    assert seen.count(True) == 1


def test_list_changed_scanner_ignores_other_messages() -> None:
    scanner = ListChangedScanner()

    assert scanner.feed(b'data: {"method":"notifications/resources/list_changed"}\n\n') is False
    assert scanner.feed(b'data: {"method":"notifications/progress"}\n\n') is False


@pytest.mark.parametrize(
    "result",
    [
        b'{"type":"text","text":"notifications/tools/list_changed"}',
        b'{"type":"text","text":"{\\"method\\":\\"notifications/tools/list_changed\\"}"}',
    ],
)
def test_list_changed_scanner_ignores_the_words_inside_a_tool_result(result: bytes) -> None:
    """An upstream's tool output mentioning the notification must not trigger syncs."""
    scanner = ListChangedScanner()
    event = b'data: {"jsonrpc":"2.0","id":3,"result":{"content":[' + result + b"]}}\n\n"

    assert scanner.feed(event) is False
