"""Property-based run over every operation of ``/openapi.json`` (Schemathesis + Hypothesis).

With a valid admin token, no generated request (valid or deliberately invalid) may produce
a 5xx, and every error response has the ``{"error", "message"}`` shape. The route set is read
from the served schema, so endpoints added later are covered without editing this test.

Schemathesis' own ASGI transport runs the app on a private event loop, where the app's
MongoDB client (bound to the test loop) cannot be used. Hypothesis therefore runs in a worker
thread and hands each request to the test loop's ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from bson import ObjectId
from httpx import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err, Ok

from packages.models import MCPServer
from registry.config import Settings
from tests.conftest import make_settings
from tests.factories import make_caller

MAX_EXAMPLES = {"positive": 15, "negative": 10}
REQUEST_TIMEOUT_SECONDS = 30.0
BASE_URL = "http://registry.test"


def fuzz_settings(*, mongo_uri: str, db_name: str, data_dir: Any) -> Settings:
    # Registering a server runs discovery against a generated URL; keep that short.
    return make_settings(
        mongo_uri=mongo_uri,
        db_name=db_name,
        data_dir=data_dir,
        discovery_timeout_seconds=0.5,
        upstream_timeout_seconds=0.5,
    )


def _to_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis' requests-style keyword arguments → ``httpx.AsyncClient.request``."""
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers") or {},
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        request["content"] = data
    elif data is not None:
        request["data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs["files"]
    return request


def _problem(response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return f"status {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return f"status {response.status_code} body is not JSON"
        if not isinstance(body, dict) or not {"error", "message"} <= set(body):
            return f"status {response.status_code} body lacks error/message: {body!r}"[:400]
    return None


def _run_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    send: Callable[[str, dict[str, Any]], httpx.Response],
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> str | None:
    """Run Hypothesis over one operation; the first problem found (after shrinking) or None."""
    found: list[str] = []

    @settings(
        max_examples=MAX_EXAMPLES[mode.value],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def check(case: Any) -> None:
        request = _to_httpx(case.as_transport_kwargs(base_url=BASE_URL, headers=headers))
        response = send(f"{operation.method.upper()} {operation.path}", request)
        problem = _problem(response)
        if problem is not None:
            found[:] = [f"{case.method} {case.formatted_path}: {problem}"]
            raise AssertionError(problem)

    try:
        check()
    except Unsatisfiable:
        # No invalid input exists (an operation without parameters or body).
        return None
    except AssertionError:
        return found[0] if found else "assertion failed"
    return None


async def _seed_server(settings: Settings, author: str) -> ObjectId:
    """A shared server pointing at a closed local port (discovery fails fast)."""
    server = MCPServer.model_validate(
        {
            "serverName": "fuzzseed",
            "config": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "title": "Fuzz"},
            "author": ObjectId(author),
            "scope": "shared_app",
            "status": "active",
            "path": "/mcp/fuzzseed",
            "__v": 0,
        }
    )
    await server.insert()
    assert server.id is not None
    return server.id


async def test_openapi_operations_never_answer_5xx(
    mongo_uri: str, db_name: str, tmp_path: Any
) -> None:
    from registry.app import create_app

    app_settings = fuzz_settings(mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path)
    app = create_app(app_settings)
    admin = make_caller(app_settings, role="admin")
    loop = asyncio.get_running_loop()
    async with app.router.lifespan_context(app):
        # A 500 is reported as a finding, not raised out of the transport.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url=BASE_URL) as client:
            server_id = str(await _seed_server(app_settings, admin.id))
            spec = (await client.get("/openapi.json")).json()
            schema = schemathesis.openapi.from_dict(spec)

            statuses: dict[str, set[int]] = {}

            def send(operation: str, request: dict[str, Any]) -> httpx.Response:
                future = asyncio.run_coroutine_threadsafe(client.request(**request), loop)
                response = future.result(timeout=REQUEST_TIMEOUT_SECONDS)
                statuses.setdefault(operation, set()).add(response.status_code)
                return response

            def fuzz() -> tuple[int, list[str]]:
                operations = 0
                problems: list[str] = []
                for result in schema.get_all_operations():
                    if isinstance(result, Err):
                        problems.append(f"invalid operation in the schema: {result.err()}")
                        continue
                    operation = result.ok()
                    operations += 1
                    for mode in schemathesis.GenerationMode:
                        problem = _run_operation(operation, mode, send, admin.headers)
                        if problem is not None:
                            problems.append(f"[{mode.value}] {problem}")
                # Random ids only reach 404s; run the server operations again on a real one.
                # DELETE goes last so the others still find the server.
                pinned = [
                    result.ok()
                    for result in schema.get_all_operations()
                    if isinstance(result, Ok) and "{server_id}" in result.ok().path
                ]
                for operation in sorted(pinned, key=lambda op: op.method.upper() == "DELETE"):
                    problem = _run_operation(
                        operation,
                        schemathesis.GenerationMode.POSITIVE,
                        send,
                        admin.headers,
                        path_parameters={"server_id": server_id},
                    )
                    if problem is not None:
                        problems.append(f"[seeded server] {problem}")
                return operations, problems

            operations, problems = await asyncio.to_thread(fuzz)

    assert problems == []
    assert operations == len(statuses)
    # The token is accepted: admin-only reads answer 200, so the run is not 401s throughout.
    assert 200 in statuses["GET /api/v1/servers/stats"]
    assert 200 in statuses["GET /api/v1/audit-logs"]
    # The seeded server was reached (not only 404s for random ids).
    assert 200 in statuses["GET /api/v1/servers/{server_id}"]
