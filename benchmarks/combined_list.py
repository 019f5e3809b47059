"""Combined server scale: ``tools/list`` on ``/mcp`` with many registered servers.

    .venv/bin/python benchmarks/combined_list.py [--servers 1000] [--tools 3] [--sync-busy]

What it measures, in one run on one machine:

1. starts the service in its own process (``mcp-registry serve``, embedded database in a
   temporary directory, generated secrets, the background sync worker off unless
   ``--sync-busy``) and one echo upstream (``tests.support.upstream_main``), registered
   through ``POST /api/v1/servers`` so ``echo_mcp_bench`` can be called through ``/mcp``;
2. inserts ``--servers`` server documents straight into MongoDB (as the external app would),
   pointing at a closed port, each with ``--tools`` exposed catalog tools; one in ten is a
   private server of the admin, so the user sees 90 % of them;
3. with the real ``mcp`` SDK client session on ``/mcp``, for an admin and for a user:
   - cold ``tools/list``: ``--rounds`` lists, each after the gateway's caches expired
     (6 s idle: the server, visible-server and catalog caches keep entries 5 s);
   - warm ``tools/list``: 10 lists in a row right after a cold one (p50 and max), and the
     p50 of 10 more with plain HTTP requests (the service's share, without the SDK's parsing);
   - warm ``tools/call echo_mcp_bench`` through ``/mcp``: 20 calls (p50);
4. prints the figures. ``--sync-busy`` runs the sync worker against the dead servers
   (interval 30 s, tick 1 s, concurrency 8) and measures once it is under way: the situation
   in which the per-server loop took 19-45 s.

It is not a test: the figures depend on the machine. Baseline in docs/performance.md
("Combined server: tools/list with many servers").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._service import database_uri, register, registry_process  # noqa: E402
from registry.auth import TokenIssuer, UserContext  # noqa: E402
from tests.support import DEFAULT_TOOLS, UpstreamSpec, start_upstream_process  # noqa: E402
from tests.support.process import free_port  # noqa: E402

CLOSED_URL = "http://127.0.0.1:9/mcp"
CACHE_EXPIRY_SECONDS = 6.0
WARM_LISTS = 10
WARM_CALLS = 20


def insert_servers(
    uri: str, database: str, *, count: int, tools: int, admin_id: str
) -> tuple[int, int]:
    """Insert ``count`` servers with ``tools`` exposed tools each; returns the tool names the
    admin and the user should see (excluding the live upstream)."""
    from bson import ObjectId
    from pymongo import MongoClient

    now = datetime.now(UTC)
    servers: list[dict[str, Any]] = []
    catalog: list[dict[str, Any]] = []
    private = 0
    for i in range(count):
        name = f"dead{i:04d}"
        server_id = ObjectId()
        is_private = i % 10 == 9
        private += is_private
        servers.append(
            {
                "_id": server_id,
                "serverName": name,
                "title": name,
                "config": {"type": "streamable-http", "url": CLOSED_URL, "requiresOAuth": False},
                "author": ObjectId(admin_id),
                "scope": "private_user" if is_private else "shared_app",
                "status": "active",
                "path": f"/mcp/{name}",
                "tags": [],
                "numStars": 0,
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
        for t in range(tools):
            catalog.append(
                {
                    "serverId": server_id,
                    "serverName": name,
                    "name": f"tool{t}",
                    "description": f"Tool {t} of {name}.",
                    "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}},
                    "metadata": {"read_only": False, "destructive": False},
                    "exposureState": "active",
                    "registrationState": "selected",
                    "allowedRoles": [],
                    "allowedGroups": [],
                    "discoveryHash": f"{name}-{t}",
                    "version": 1,
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
    with MongoClient[dict[str, Any]](uri, directConnection=True) as client:
        client[database]["mcpservers"].insert_many(servers)
        if catalog:
            client[database]["tools"].insert_many(catalog)
    return count * tools, (count - private) * tools


def sync_runs(uri: str, database: str) -> int:
    from pymongo import MongoClient

    with MongoClient[dict[str, Any]](uri, directConnection=True) as client:
        return client[database]["sync_runs"].count_documents({})


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result


async def raw_lists(url: str, token: str) -> list[float]:
    """Warm ``tools/list`` with plain HTTP (no SDK parsing): the service's own share."""
    import httpx

    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
    }
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    latencies = []
    async with httpx.AsyncClient(headers=headers, timeout=300) as http:
        opened = await http.post(url, json=init)
        headers = {"mcp-session-id": opened.headers["mcp-session-id"]}
        for i in range(WARM_LISTS + 1):
            started = time.perf_counter()
            listed = await http.post(
                url, json={"jsonrpc": "2.0", "id": i + 1, "method": "tools/list"}, headers=headers
            )
            listed.raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies[1:]


async def measure(url: str, token: str, *, rounds: int, expected: int) -> dict[str, Any]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    figures: dict[str, Any] = {"cold": [], "warm": [], "call": [], "raw": []}
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=300) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for _ in range(rounds):
            await asyncio.sleep(CACHE_EXPIRY_SECONDS)
            elapsed, listed = await timed(session.list_tools)
            figures["cold"].append(elapsed)
            figures["listed"] = len(listed.tools)
            for _ in range(WARM_LISTS):
                elapsed, _ = await timed(session.list_tools)
                figures["warm"].append(elapsed)
        for i in range(WARM_CALLS):
            started = time.perf_counter()
            result = await session.call_tool("echo_mcp_bench", {"text": f"c{i}"})
            elapsed = time.perf_counter() - started
            if result.is_error:
                raise RuntimeError(f"echo_mcp_bench failed: {result}")
            figures["call"].append(elapsed)
    figures["raw"] = await raw_lists(url, token)
    if figures["listed"] != expected:
        raise RuntimeError(f"listed {figures['listed']} tools, expected {expected}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--tools", type=int, default=3, help="exposed tools per server")
    parser.add_argument("--rounds", type=int, default=3, help="cold lists per caller")
    parser.add_argument(
        "--sync-busy", action="store_true", help="measure while the sync worker is busy"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="combined-bench-") as tmp:
        try:
            return _run(args, tmp)
        except Exception:
            log = Path(tmp) / "registry.log"
            if log.exists():
                sys.stderr.write(log.read_text()[-4000:])
            raise


def _run(args: argparse.Namespace, tmp: str) -> int:
    jwt_secret = secrets.token_hex(32)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "REGISTRY_"))},
        "REGISTRY_DATA_DIR": tmp,
        "JWT_SECRET": jwt_secret,
        "CREDS_KEY": secrets.token_hex(32),
        "CREDS_IV": secrets.token_hex(16),
        # INFO: the script reads the embedded database's address from the start-up lines.
        "LOG_LEVEL": "INFO",
        "REGISTRY_LOG_FORMAT": "json",
        "REGISTRY_SYNC_ENABLED": "true" if args.sync_busy else "false",
        "REGISTRY_SYNC_INTERVAL_SECONDS": "30",
        "REGISTRY_SYNC_TICK_SECONDS": "1",
        "REGISTRY_DISCOVERY_TIMEOUT_SECONDS": "2",
    }
    issuer = TokenIssuer(hs256_secret=jwt_secret)
    admin = UserContext(user_id="0" * 23 + "1", role="admin", username="bench-admin")
    user = UserContext(user_id="0" * 23 + "2", role="user", username="bench-user")
    tokens: dict[str, str] = {
        who.role: issuer.issue(user=who, token_type="access", expires_in=timedelta(hours=1))
        for who in (admin, user)
    }
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(tmp) / "registry.log"
    results: dict[str, dict[str, Any]] = {}
    with (
        start_upstream_process(UpstreamSpec(name="bench")) as upstream,
        registry_process(port, env, log_path),
    ):
        register(base_url, {"authorization": f"Bearer {tokens['admin']}"}, upstream.url)
        uri, database = database_uri(log_path)
        every, shared = insert_servers(
            uri, database, count=args.servers, tools=args.tools, admin_id=admin.user_id
        )
        live = len(DEFAULT_TOOLS)
        if args.sync_busy:
            deadline = time.monotonic() + 60
            while sync_runs(uri, database) < 10 and time.monotonic() < deadline:
                time.sleep(0.5)
        for role, expected in (("admin", every + live), ("user", shared + live)):
            results[role] = asyncio.run(
                measure(f"{base_url}/mcp", tokens[role], rounds=args.rounds, expected=expected)
            )
        busy_runs = sync_runs(uri, database) if args.sync_busy else 0

    print(
        f"combined tools/list: {args.servers} servers x {args.tools} tools, sync worker "
        f"{'busy (' + str(busy_runs) + ' runs by the end)' if args.sync_busy else 'off'}"
    )
    for role, figures in results.items():
        cold = ", ".join(f"{value:.3f}" for value in figures["cold"])
        print(
            f"  {role:5}  {figures['listed']:5} tools   cold [{cold}] s   warm p50 "
            f"{statistics.median(figures['warm']) * 1000:.1f} ms (max "
            f"{max(figures['warm']) * 1000:.1f}; plain HTTP "
            f"{statistics.median(figures['raw']) * 1000:.1f})   call p50 "
            f"{statistics.median(figures['call']) * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
