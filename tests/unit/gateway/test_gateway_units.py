"""Pure parts of the gateway: message classification, SSE parsing, sessions, caches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from registry.auth import TokenIssuer, TokenVerifier, UserContext
from registry.errors import AuthenticationError
from registry.gateway.connection_state import ConnectionState, ConnectionStateStore
from registry.gateway.credentials import CredentialResolver
from registry.gateway.jsonrpc import (
    CREDENTIAL_REQUIRED,
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
    error_body,
    id_key,
    parse_message,
)
from registry.gateway.lookup import build_server, credential_mode
from registry.gateway.principals import PrincipalCache
from registry.gateway.sessions import GatewaySession, SessionStore, UpstreamSession
from registry.gateway.sse import EventTooLargeError, SseParser

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def server_doc(**config: Any) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "serverName": "alpha",
        "path": "/mcp/alpha",
        "scope": config.pop("scope", "shared_app"),
        "author": ObjectId(),
        "status": "active",
        "config": {"type": "streamable-http", "url": "http://upstream/mcp", **config},
        "updatedAt": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_parse_message_tools_call() -> None:
    message = parse_message(
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}'
    )

    assert (message.method, message.id, message.tool, message.is_request) == (
        "tools/call",
        7,
        "echo",
        True,
    )


def test_parse_message_notification_and_response() -> None:
    note = parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    reply = parse_message(b'{"jsonrpc":"2.0","id":"s-1","result":{}}')

    assert (note.is_request, note.has_id) == (False, False)
    assert (reply.method, reply.is_request, reply.id) == (None, False, "s-1")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", PARSE_ERROR),
        (b"[]", INVALID_REQUEST),
        (b'{"id":1,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', INVALID_REQUEST),
    ],
)
def test_parse_message_rejects_invalid(raw: bytes, code: int) -> None:
    with pytest.raises(RpcError) as refused:
        parse_message(raw)

    assert refused.value.code == code


def test_error_body_and_id_key() -> None:
    assert error_body(3, -32001, "late") == (
        b'{"jsonrpc":"2.0","id":3,"error":{"code":-32001,"message":"late"}}'
    )
    assert id_key(1) != id_key("1")


def test_sse_parser_splits_events_across_chunks() -> None:
    parser = SseParser()

    first = parser.feed(b'event: endpoint\r\ndata: /messages?s=1\r\n\r\n: ping\n\ndata: {"a"')
    second = parser.feed(b":1}\n\nevent: message\ndata: x\ndata: y\n\n")

    assert first == [("endpoint", b"/messages?s=1")]
    assert second == [("message", b'{"a":1}'), ("message", b"x\ny")]


def test_sse_parser_limits_event_size() -> None:
    parser = SseParser(max_event_bytes=10)

    with pytest.raises(EventTooLargeError):
        parser.feed(b"data: 0123456789abcdef")


def _session(session_id: str) -> GatewaySession:
    return GatewaySession(
        id=session_id,
        user_id="u",
        server_id="s",
        server_name="alpha",
        upstream=UpstreamSession(server_id="s", initialize=b"{}"),
    )


def test_session_store_evicts_oldest_and_reports_closed() -> None:
    closed: list[str] = []
    store = SessionStore(maxsize=2, idle_seconds=60, on_close=lambda s: closed.append(s.id))

    for name in ("a", "b", "c"):
        store.add(_session(name))

    assert closed == ["a"]
    assert store.get("a") is None
    assert store.get("c") is not None
    assert store.remove("b") is not None
    assert closed == ["a", "b"]


def test_session_store_forgets_idle_sessions() -> None:
    closed: list[str] = []
    store = SessionStore(maxsize=10, idle_seconds=60, on_close=lambda s: closed.append(s.id))
    idle, fresh = _session("idle"), _session("fresh")
    store.add(idle)
    store.add(fresh)
    idle.last_seen -= 120

    assert store.sweep() == 1
    assert closed == ["idle"]
    assert store.get("fresh") is fresh


def test_principal_cache_verifies_once_and_refuses_bad_headers() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET)
    calls: list[str] = []
    original = verifier.decode

    def counting(token: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return original(token, **kwargs)

    verifier.decode = counting  # type: ignore[method-assign]  # count signature checks
    cache = PrincipalCache(verifier)
    user = UserContext(user_id=str(ObjectId()), role="user")
    token = TokenIssuer(hs256_secret=SECRET).issue(
        user=user, token_type="access", expires_in=timedelta(minutes=5)
    )

    first = cache.authenticate(f"Bearer {token}".encode())
    second = cache.authenticate(f"bearer {token}".encode())

    assert first == second == user
    assert len(calls) == 1
    with pytest.raises(AuthenticationError):
        cache.authenticate(None)
    with pytest.raises(AuthenticationError):
        cache.authenticate(b"Basic abc")


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        ({}, "none"),
        ({"requiresOAuth": True}, "user"),
        ({"apiKey": {"source": "user", "authorization_type": "bearer"}}, "user"),
        ({"apiKey": {"source": "admin", "authorization_type": "bearer", "key": "x"}}, "app"),
        ({"scope": "shared_user"}, "user"),
    ],
)
def test_credential_mode(config: dict[str, Any], mode: str) -> None:
    assert credential_mode(server_doc(**config)) == mode


def test_build_server_timeout_and_placeholder_headers() -> None:
    doc = server_doc(
        timeout=2500, headers={"X-Static": "1", "X-User": "{{LIBRECHAT_USER_ID}}", "Host": "h"}
    )

    server = build_server(doc, default_timeout_seconds=15)

    assert server.timeout_seconds == 2.5
    assert server.base_headers == {"X-Static": "1"}
    assert server.credential_mode == "none"
    assert server.config_version == "2026-01-01T00:00:00+00:00"


def test_build_server_admin_key_missing_is_a_problem() -> None:
    doc = server_doc(apiKey={"source": "admin", "authorization_type": "bearer"})

    server = build_server(doc, default_timeout_seconds=15)

    assert server.credential_problem == (
        "Server 'alpha' has no API key configured; an admin must set one"
    )


class _Credential:
    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value
        self.expires_at = datetime.now(UTC) + timedelta(hours=1)


async def test_credential_resolver_user_key_and_missing() -> None:
    lookups: list[str] = []

    async def finder(*, user_id: ObjectId, server_name: str, now: datetime) -> _Credential | None:
        lookups.append(str(user_id))
        return _Credential("api_key", "k-1") if str(user_id) == alice.user_id else None

    alice = UserContext(user_id=str(ObjectId()))
    bob = UserContext(user_id=str(ObjectId()))
    server = build_server(
        server_doc(
            apiKey={"source": "user", "authorization_type": "custom", "custom_header": "X-K"}
        ),
        default_timeout_seconds=15,
    )
    resolver = CredentialResolver(finder)

    first = await resolver.headers_for(server, alice)
    second = await resolver.headers_for(server, alice)
    with pytest.raises(RpcError) as missing:
        await resolver.headers_for(server, bob)

    assert first == second == {"X-K": "k-1"}
    assert lookups == [alice.user_id, bob.user_id]
    assert missing.value.code == CREDENTIAL_REQUIRED
    assert "POST /api/v1/tokens" in missing.value.message


def test_record_success_reports_reconnects_only() -> None:
    store = ConnectionStateStore()

    assert store.record_success("s", config_version="v1") is True
    assert store.record_success("s", config_version="v1") is False
    store.set("s", ConnectionState.ERROR, config_version="v1")
    assert store.record_success("s", config_version="v1") is True
    assert store.record_success("s", config_version="v2") is True
    assert store.state("s", config_version="v2") is ConnectionState.CONNECTED
