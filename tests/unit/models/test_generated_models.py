"""The public surface of ``packages.models`` and what the generator derived from the x- keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from beanie import Document, PydanticObjectId
from bson import ObjectId
from pydantic import BaseModel, TypeAdapter

import packages.models
from packages.models import (
    SCHEMA_VERSION,
    MCPConfig,
    MCPServer,
    SSETransport,
    StdioTransport,
    StreamableHTTPTransport,
    Token,
)
from packages.models.schema_check import SchemaVersionMismatchError, check_schema_version

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "jarvis-schemas" / "examples"


def load_example(version: str, name: str) -> dict[str, Any]:
    with (EXAMPLES / version / f"{name}.json").open(encoding="utf-8") as fh:
        document: dict[str, Any] = json.load(fh)
    return document


def index_specs(document: type[Document]) -> list[dict[str, Any]]:
    return [dict(index.document) for index in document.Settings.indexes]


def test_public_names_match_all() -> None:
    assert sorted(packages.models.__all__) == sorted(
        [
            "SCHEMA_VERSION",
            "ApiKeyConfig",
            "CustomUserVar",
            "MCPConfig",
            "MCPServer",
            "OAuthConfig",
            "SSETransport",
            "StdioTransport",
            "StreamableHTTPTransport",
            "Token",
            "ToolFunction",
            "ToolFunctionDefinition",
            "WebSocketTransport",
        ]
    )
    assert SCHEMA_VERSION == "v0.0.31"


def test_documents_use_x_collection_names() -> None:
    assert issubclass(MCPServer, Document)
    assert issubclass(Token, Document)
    assert MCPServer.Settings.name == "mcpservers"
    assert Token.Settings.name == "tokens"
    assert MCPServer.Settings.keep_nulls is False
    assert Token.Settings.keep_nulls is False


def test_mcpserver_indexes_use_default_names() -> None:
    specs = {spec["name"]: spec for spec in index_specs(MCPServer)}

    assert list(specs) == [
        "serverName_1",
        "author_1",
        "scope_1",
        "status_1",
        "path_1",
        "tags_1",
        "updatedAt_-1__id_1",
    ]
    assert specs["serverName_1"]["unique"] is True
    assert specs["path_1"]["unique"] is True
    assert "unique" not in specs["author_1"]
    assert list(specs["updatedAt_-1__id_1"]["key"].items()) == [("updatedAt", -1), ("_id", 1)]


def test_token_index_is_ttl_on_expires_at() -> None:
    assert index_specs(Token) == [
        {"key": {"expiresAt": 1}, "name": "expiresAt_1", "expireAfterSeconds": 0}
    ]


@pytest.mark.parametrize(
    ("document", "name", "alias"), [(MCPServer, "author", "author"), (Token, "user_id", "userId")]
)
def test_object_id_fields_accept_bson_object_id(
    document: type[BaseModel], name: str, alias: str
) -> None:
    # Document instances need init_beanie (a server); validate the field's own type instead.
    field = document.model_fields[name]
    oid = ObjectId("6718a2c4e1f03b7d9c0001a1")

    assert field.annotation is PydanticObjectId
    assert field.alias == alias
    assert TypeAdapter(PydanticObjectId).validate_python(oid) == oid
    assert TypeAdapter(PydanticObjectId).validate_python(str(oid)) == oid


def test_documents_alias_fields_to_camel_case() -> None:
    server_fields = {name: field.alias for name, field in MCPServer.model_fields.items()}
    token_fields = {name: field.alias for name, field in Token.model_fields.items()}

    assert server_fields["id"] == "_id"
    assert server_fields["server_name"] == "serverName"
    assert server_fields["created_at"] == "createdAt"
    assert server_fields["updated_at"] == "updatedAt"
    assert server_fields["field__v"] == "__v"
    assert "field_id" not in server_fields
    assert token_fields["expires_at"] == "expiresAt"
    assert MCPServer.model_config.get("extra") == "allow"
    assert Token.model_config.get("extra") == "allow"


@pytest.mark.parametrize(
    ("version", "example", "transport"),
    [
        (version, example, transport)
        for version in ("v0.0.31", "v0.0.32")
        for example, transport in (
            ("mcpserver-github", StreamableHTTPTransport),
            ("mcpserver-sse-error", SSETransport),
            ("mcpserver-tavily", StdioTransport),
        )
    ],
)
def test_mcp_config_parses_example_into_transport(
    version: str, example: str, transport: type[BaseModel]
) -> None:
    config = load_example(version, example)["config"]

    parsed = MCPConfig.model_validate(config)

    assert type(parsed.root) is transport
    assert parsed.root.model_dump(mode="json", by_alias=True, exclude_unset=True) == config


def test_mcp_config_keeps_newer_fields() -> None:
    config = load_example("v0.0.32", "mcpserver-github")["config"]

    parsed = MCPConfig.model_validate(config)

    assert isinstance(parsed.root, StreamableHTTPTransport)
    assert parsed.root.url == config["url"]
    assert parsed.root.model_extra is not None
    assert parsed.root.model_extra["requestHeaders"] == config["requestHeaders"]


def test_check_schema_version_matching_passes() -> None:
    check_schema_version(SCHEMA_VERSION)


def test_check_schema_version_mismatch_raises_with_command() -> None:
    with pytest.raises(SchemaVersionMismatchError) as info:
        check_schema_version("v0.0.32")

    assert str(info.value) == (
        "Generated models are v0.0.31 but SCHEMA_VERSION is v0.0.32. "
        "Run: python scripts/generate_schemas.py --version v0.0.32"
    )
    assert info.value.expected == "v0.0.32"
    assert info.value.actual == "v0.0.31"
    assert isinstance(info.value, RuntimeError)
