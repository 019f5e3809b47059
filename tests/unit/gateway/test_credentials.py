"""The gateway's per-user credential cache forgets a credential as soon as it changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from registry.auth import UserContext
from registry.gateway.credentials import CredentialResolver, forget_user_credentials
from registry.gateway.lookup import ResolvedServer, build_server


class _Credential:
    def __init__(self, value: str) -> None:
        self.kind = "api_key"
        self.value = value
        self.expires_at = datetime.now(UTC) + timedelta(hours=1)


def user_server(name: str) -> ResolvedServer:
    doc = {
        "_id": ObjectId(),
        "serverName": name,
        "path": f"/mcp/{name}",
        "scope": "shared_user",
        "author": ObjectId(),
        "status": "active",
        "config": {
            "type": "streamable-http",
            "url": "http://upstream/mcp",
            "apiKey": {"source": "user", "authorization_type": "bearer"},
        },
        "updatedAt": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return build_server(doc, default_timeout_seconds=15)


class Store:
    """A stand-in for the tokens collection: the current key per (user id, server name)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}
        self.reads = 0
        self.reading = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def find(
        self, *, user_id: ObjectId, server_name: str, now: datetime
    ) -> _Credential | None:
        self.reads += 1
        self.reading.set()
        key = self.keys.get((str(user_id), server_name))
        if self.gate is not None:
            await self.gate.wait()
        return _Credential(key) if key is not None else None


async def test_forget_user_credentials_drops_that_user_and_server_only() -> None:
    """Audit G5: a deleted or replaced credential kept being used for up to 30 s."""
    store = Store()
    resolver = CredentialResolver(store.find)
    alice = UserContext(user_id=str(ObjectId()))
    bob = UserContext(user_id=str(ObjectId()))
    github, jira = user_server("github"), user_server("jira")
    for user in (alice, bob):
        for server in (github, jira):
            store.keys[(user.user_id, server.name)] = f"{user.user_id}-{server.name}-1"
            await resolver.headers_for(server, user)
    reads = store.reads

    store.keys[(alice.user_id, "github")] = "replaced"
    forget_user_credentials(user_id=alice.user_id.upper(), server_name="github")
    replaced = await resolver.headers_for(github, alice)
    unchanged = [await resolver.headers_for(s, u) for s, u in ((jira, alice), (github, bob))]

    assert replaced == {"Authorization": "Bearer replaced"}
    assert store.reads == reads + 1
    assert unchanged == [
        {"Authorization": f"Bearer {alice.user_id}-jira-1"},
        {"Authorization": f"Bearer {bob.user_id}-github-1"},
    ]


async def test_lookup_in_flight_during_a_change_is_not_cached() -> None:
    store = Store()
    resolver = CredentialResolver(store.find)
    alice = UserContext(user_id=str(ObjectId()))
    github = user_server("github")
    store.keys[(alice.user_id, "github")] = "old"
    store.gate = asyncio.Event()

    pending = asyncio.create_task(resolver.headers_for(github, alice))
    await store.reading.wait()  # the lookup read the old key and waits on the gate
    store.keys[(alice.user_id, "github")] = "new"
    forget_user_credentials(user_id=alice.user_id, server_name="github")
    store.gate.set()
    raced = await pending
    store.gate = None
    fresh = await resolver.headers_for(github, alice)

    assert raced == {"Authorization": "Bearer old"}
    assert fresh == {"Authorization": "Bearer new"}
    assert store.reads == 2
