"""Gateway overhead: ``tools/call`` straight to an MCP upstream vs. through ``/mcp/{server}``.

    make bench            # or: .venv/bin/python benchmarks/gateway_overhead.py [--calls 500]

What it measures, in one run on one machine:

1. starts an echo upstream built with the ``mcp`` SDK in its own process
   (``tests.support.upstream_main``, Streamable HTTP, stateful, SSE answers);
2. starts the service in its own process (``mcp-registry serve``: uvicorn, uvloop and httptools
   when installed) on the embedded database in a temporary directory, with generated secrets;
3. registers the upstream through ``POST /api/v1/servers`` with an admin token it signs;
4. (a) ``--calls`` sequential ``tools/call echo`` per side after a warm-up: p50 / p99 latency;
   (b) ``--clients`` concurrent clients for ``--seconds`` per side: calls per second;
5. prints the ratios gateway/direct. Goal (issue 5): p50 ratio <= 1.5, throughput ratio >= 0.6.

Both sides use the same client: a lean HTTP/1.1 JSON-RPC client, one keep-alive connection per
client, each with its own MCP session (``initialize`` + ``notifications/initialized`` first).
That is the primary figure. ``--sdk`` adds a secondary, clearly labelled measurement with the
real ``mcp`` SDK client session (``ClientSession`` over ``streamable_http_client``) on both
sides: sequential ``call_tool`` p50/p99, the latency a typical MCP client sees.
Baseline recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._service import database_uri, register, registry_process  # noqa: E402
from registry.auth import TokenIssuer, UserContext  # noqa: E402
from tests.support import UpstreamSpec, start_upstream_process  # noqa: E402
from tests.support.process import free_port  # noqa: E402

PROTOCOL = "2025-11-25"


class LeanClient:
    """Minimal HTTP/1.1 JSON-RPC client on one keep-alive connection (chunked + length)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path
        self.headers = headers
        self.session_id: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._next_id = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def post(self, message: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            "content-type: application/json",
            "accept: application/json, text/event-stream",
            f"content-length: {len(body)}",
        ]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.session_id is not None:
            lines += [f"mcp-session-id: {self.session_id}", f"mcp-protocol-version: {PROTOCOL}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(chunks)
        else:
            data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, data

    async def initialize(self) -> None:
        status, headers, _ = await self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"},
                },
            }
        )
        assert status == 200, status
        self.session_id = headers.get("mcp-session-id")
        status, _, _ = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202, status

    async def call_echo(self, text: str) -> None:
        self._next_id += 1
        status, _, data = await self.post(
            {
                "jsonrpc": "2.0",
                "id": self._next_id,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}},
            }
        )
        if status != 200 or text.encode() not in data or b'"isError":false' not in data:
            raise RuntimeError(f"bad answer: HTTP {status} {data[:200]!r}")


@dataclass
class Side:
    name: str
    url: str
    headers: dict[str, str]


async def sequential(side: Side, calls: int, warmup: int) -> list[float]:
    client = LeanClient(side.url, side.headers)
    await client.connect()
    await client.initialize()
    for i in range(warmup):
        await client.call_echo(f"w{i}")
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        await client.call_echo(f"m{i}")
        latencies.append(time.perf_counter() - started)
    await client.close()
    return latencies


async def throughput(side: Side, clients: int, seconds: float) -> float:
    pool = [LeanClient(side.url, side.headers) for _ in range(clients)]
    for client in pool:
        await client.connect()
        await client.initialize()
        await client.call_echo("warm")
    done = 0
    stop = time.perf_counter() + seconds

    async def run(client: LeanClient) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            await client.call_echo(f"t{i}")
            i += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(client) for client in pool))
    elapsed = time.perf_counter() - started
    for client in pool:
        await client.close()
    return done / elapsed


async def sdk_sequential(side: Side, calls: int, warmup: int) -> list[float]:
    """Sequential ``call_tool`` latencies with the real ``mcp`` SDK client session."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    latencies = []
    async with (
        httpx2.AsyncClient(headers=side.headers, timeout=30) as http,
        streamable_http_client(side.url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for i in range(warmup):
            await session.call_tool("echo", {"text": f"w{i}"})
        for i in range(calls):
            started = time.perf_counter()
            result = await session.call_tool("echo", {"text": f"m{i}"})
            latencies.append(time.perf_counter() - started)
            if result.is_error:
                raise RuntimeError(f"bad answer through {side.name}: {result}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def profiled_registry(
    port: int, env: dict[str, str], log_path: Path, profile: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    """The service, under cProfile (written to ``profile``) when one is asked for."""
    command = None
    if profile:
        code = (
            # uvicorn re-raises SIGTERM after its graceful shutdown; ignore that so the
            # profile gets written.
            "import cProfile, signal, sys; from registry.cli import main; "
            "signal.signal(signal.SIGTERM, lambda *_: None); p = cProfile.Profile(); "
            f"p.enable(); rc = main(['serve', '--port', '{port}']); p.disable(); "
            f"p.dump_stats({profile!r}); sys.exit(rc)"
        )
        command = [sys.executable, "-c", code]
    with registry_process(port, env, log_path, command) as process:
        yield process


def insert_server(log_path: Path, upstream_url: str, author: str) -> str:
    from datetime import UTC, datetime

    from bson import ObjectId
    from pymongo import MongoClient

    uri, database = database_uri(log_path)
    now = datetime.now(UTC)
    with MongoClient[dict[str, Any]](uri) as client:
        client[database]["mcpservers"].insert_one(
            {
                "serverName": "bench",
                "config": {"type": "streamable-http", "url": upstream_url, "requiresOAuth": False},
                "author": ObjectId(author),
                "scope": "shared_app",
                "status": "active",
                "path": "/mcp/bench",
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
    return "/mcp/bench"


def cpu_seconds(pid: int, *, system: bool | None = None) -> float:
    """CPU time of a process (Linux): user + system, or only system / only user."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, sys_time = int(fields[11]), int(fields[12])
    ticks = sys_time if system else user if system is False else user + sys_time
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure(
    direct: Side, gateway: Side, args: argparse.Namespace, service_pid: int, upstream_pid: int
) -> dict[str, float]:
    results: dict[str, float] = {}
    seq: dict[str, list[float]] = {"direct": [], "gateway": []}
    cpu = {"gateway_cpu": 0.0, "upstream_cpu_direct": 0.0, "upstream_cpu_gateway": 0.0}
    # Alternate the sides in rounds so drift (CPU frequency, caches) hits both alike.
    rounds = 5
    for _ in range(rounds):
        for side in (direct, gateway):
            service_before, upstream_before = cpu_seconds(service_pid), cpu_seconds(upstream_pid)
            service_sys_before = cpu_seconds(service_pid, system=True)
            seq[side.name] += await sequential(side, args.calls // rounds, args.warmup)
            upstream_used = cpu_seconds(upstream_pid) - upstream_before
            cpu[f"upstream_cpu_{side.name}"] += upstream_used
            if side is gateway:
                cpu["gateway_cpu"] += cpu_seconds(service_pid) - service_before
                cpu["gateway_sys"] = cpu.get("gateway_sys", 0.0) + (
                    cpu_seconds(service_pid, system=True) - service_sys_before
                )
    calls = rounds * (args.calls // rounds + args.warmup + 2)
    results["gateway_cpu_ms_per_call"] = cpu["gateway_cpu"] / calls * 1000
    results["gateway_sys_ms_per_call"] = cpu["gateway_sys"] / calls * 1000
    results["upstream_cpu_ms_per_call"] = cpu["upstream_cpu_direct"] / calls * 1000
    for name, values in seq.items():
        results[f"{name}_p50_ms"] = statistics.median(values) * 1000
        results[f"{name}_p99_ms"] = percentile(values, 0.99) * 1000
    for side in (direct, gateway):
        results[f"{side.name}_rps"] = await throughput(side, args.clients, args.seconds)
    if args.sdk:
        sdk: dict[str, list[float]] = {"direct": [], "gateway": []}
        for _ in range(rounds):
            for side in (direct, gateway):
                sdk[side.name] += await sdk_sequential(side, args.calls // rounds, args.warmup)
        for name, values in sdk.items():
            results[f"sdk_{name}_p50_ms"] = statistics.median(values) * 1000
            results[f"sdk_{name}_p99_ms"] = percentile(values, 0.99) * 1000
    results["p50_ratio"] = results["gateway_p50_ms"] / results["direct_p50_ms"]
    results["p99_ratio"] = results["gateway_p99_ms"] / results["direct_p99_ms"]
    results["throughput_ratio"] = results["gateway_rps"] / results["direct_rps"]
    return results


def run_with_uvloop(coroutine: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: dict[str, float] = uvloop.run(coroutine)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", default=None, help="write a cProfile of the service here")
    parser.add_argument(
        "--sdk",
        action="store_true",
        help="also measure sequential calls with the real mcp SDK client session (secondary)",
    )
    args = parser.parse_args()

    jwt_secret = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        try:
            return _run(args, jwt_secret, tmp)
        except Exception:
            log = Path(tmp) / "registry.log"
            if log.exists():
                sys.stderr.write(log.read_text()[-4000:])
            raise


def _run(args: argparse.Namespace, jwt_secret: str, tmp: str) -> int:
    if True:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "REGISTRY_"))},
            "REGISTRY_DATA_DIR": tmp,
            "JWT_SECRET": jwt_secret,
            "CREDS_KEY": secrets.token_hex(32),
            "CREDS_IV": secrets.token_hex(16),
            "LOG_LEVEL": args.log_level,
            "REGISTRY_LOG_FORMAT": "json",
            "REGISTRY_SYNC_ENABLED": "false",
        }
        issuer = TokenIssuer(hs256_secret=jwt_secret)
        admin = UserContext(user_id="0" * 23 + "1", role="admin", username="bench-admin")
        user = UserContext(user_id="0" * 23 + "2", role="user", username="bench-user")
        admin_token = issuer.issue(user=admin, token_type="access", expires_in=timedelta(hours=1))
        user_token = issuer.issue(user=user, token_type="access", expires_in=timedelta(hours=1))
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with (
            start_upstream_process(UpstreamSpec(name="bench")) as upstream,
            profiled_registry(port, env, Path(tmp) / "registry.log", args.profile) as service,
        ):
            try:
                headers = {"authorization": f"Bearer {admin_token}"}
                path = str(register(base_url, headers, upstream.url, timeout=30)["path"])
            except urllib.error.HTTPError as exc:
                # Only while the servers API is unfinished: say so loudly, then insert the
                # document it would have written.
                print(
                    f"WARNING: POST /api/v1/servers failed (HTTP {exc.code}); inserting the "
                    "server document directly",
                    file=sys.stderr,
                )
                path = insert_server(Path(tmp) / "registry.log", upstream.url, admin.user_id)
            direct = Side("direct", upstream.url, {})
            gateway = Side(
                "gateway", f"{base_url}{path}", {"authorization": f"Bearer {user_token}"}
            )
            results = run_with_uvloop(
                measure(direct, gateway, args, service.pid, upstream.process.pid)
            )

    print(
        f"gateway overhead benchmark ({args.calls} sequential calls, {args.clients} clients "
        f"x {args.seconds:g} s, log level {args.log_level})"
    )
    print(
        f"  sequential p50  direct {results['direct_p50_ms']:.3f} ms   gateway "
        f"{results['gateway_p50_ms']:.3f} ms   ratio {results['p50_ratio']:.2f}  (goal <= 1.5)"
    )
    print(
        f"  sequential p99  direct {results['direct_p99_ms']:.3f} ms   gateway "
        f"{results['gateway_p99_ms']:.3f} ms   ratio {results['p99_ratio']:.2f}"
    )
    print(
        f"  CPU per call    upstream {results['upstream_cpu_ms_per_call']:.3f} ms   gateway "
        f"process {results['gateway_cpu_ms_per_call']:.3f} ms "
        f"(of which kernel {results['gateway_sys_ms_per_call']:.3f} ms)"
    )
    print(
        f"  throughput      direct {results['direct_rps']:.0f}/s   gateway "
        f"{results['gateway_rps']:.0f}/s   ratio {results['throughput_ratio']:.2f}  (goal >= 0.6)"
    )
    if args.sdk:
        for q in ("p50", "p99"):
            direct_ms, gateway_ms = results[f"sdk_direct_{q}_ms"], results[f"sdk_gateway_{q}_ms"]
            print(
                f"  [mcp SDK client, secondary] sequential {q}  direct {direct_ms:.3f} ms   "
                f"gateway {gateway_ms:.3f} ms   ratio {gateway_ms / direct_ms:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
