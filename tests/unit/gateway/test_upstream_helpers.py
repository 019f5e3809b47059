from __future__ import annotations

import pytest

from registry.errors import InvalidRequestError
from registry.gateway import (
    DiscoveredTool,
    build_auth_headers,
    display_url,
    to_tool_function,
    tool_function_name,
)

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def make_tool(*, description: str | None = "Return the text.") -> DiscoveredTool:
    return DiscoveredTool(
        name="echo",
        description=description,
        input_schema=SCHEMA,
        output_schema=None,
        annotations={"readOnlyHint": True},
        title=None,
    )


def test_build_auth_headers_bearer() -> None:
    headers = build_auth_headers(authorization_type="bearer", key="k-123", custom_header=None)
    assert headers == {"Authorization": "Bearer k-123"}


def test_build_auth_headers_basic_uses_key_as_given() -> None:
    headers = build_auth_headers(authorization_type="basic", key="dXNlcjpwdw==", custom_header=None)
    assert headers == {"Authorization": "Basic dXNlcjpwdw=="}


def test_build_auth_headers_custom() -> None:
    headers = build_auth_headers(
        authorization_type="custom", key="k-123", custom_header="X-Api-Key"
    )
    assert headers == {"X-Api-Key": "k-123"}


@pytest.mark.parametrize("custom_header", [None, "", "Bad Header", "X-Key:"])
def test_build_auth_headers_custom_without_valid_header_name(custom_header: str | None) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        build_auth_headers(authorization_type="custom", key="k-123", custom_header=custom_header)
    assert "k-123" not in str(caught.value)


@pytest.mark.parametrize("key", ["", "line\r\nInjected: yes"])
def test_build_auth_headers_invalid_key(key: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        build_auth_headers(authorization_type="bearer", key=key, custom_header=None)
    assert caught.value.message == "The upstream API key must be a non-empty single line"


def test_tool_function_name_follows_librechat() -> None:
    assert tool_function_name("echo", "my-server") == "echo_mcp_my-server"


def test_to_tool_function_openai_format() -> None:
    assert to_tool_function(make_tool(), "srv") == {
        "type": "function",
        "function": {
            "name": "echo_mcp_srv",
            "description": "Return the text.",
            "parameters": SCHEMA,
        },
    }


def test_to_tool_function_without_description() -> None:
    function = to_tool_function(make_tool(description=None), "srv")
    assert function == {
        "type": "function",
        "function": {"name": "echo_mcp_srv", "parameters": SCHEMA},
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:pw@example.com:8080/mcp?api_key=s3cret#frag", "http://example.com:8080/mcp"),
        ("https://example.com/sse", "https://example.com/sse"),
        ("http://[::1]:9000/mcp", "http://[::1]:9000/mcp"),
        ("http://example.com:99999/mcp", "<invalid URL>"),
    ],
)
def test_display_url_strips_credentials_and_query(url: str, expected: str) -> None:
    assert display_url(url) == expected
