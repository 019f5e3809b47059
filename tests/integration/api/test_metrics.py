"""``GET /metrics``: who may scrape, and what the exposition contains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from registry.app import create_app
from registry.config import Settings
from tests.conftest import make_settings
from tests.factories import expired_token, make_caller

METRICS = "/metrics"
SCRAPE_TOKEN = "scrape-token-0123456789abcdef"


@asynccontextmanager
async def _client_for(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://registry.test") as http:
            yield http


def _settings(mongo_uri: str, db_name: str, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path, **overrides)


def _samples(text: str, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    values: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric:
                values[tuple(sorted(sample.labels.items()))] = sample.value
    return values


async def test_get_metrics_as_admin_returns_prometheus_text(
    client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    await client.get("/api/v1/servers/stats", headers=admin.headers)

    response = await client.get(METRICS, headers=admin.headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE mcp_server_operations_total counter" in response.text
    latency = _samples(response.text, "http_request_duration_seconds_count")
    stats_requests = [
        count
        for labels, count in latency.items()
        if dict(labels)["method"] == "GET"
        and dict(labels)["route"].endswith("/servers/stats")
        and dict(labels)["status"] == "200"
    ]
    assert sum(stats_requests) >= 1, sorted(latency)


async def test_get_metrics_counts_server_operations(
    client: AsyncClient, settings: Settings
) -> None:
    """Registering a server (here: an unreachable upstream) increments the operations counter."""
    admin = make_caller(settings, role="admin")
    before = await client.get(METRICS, headers=admin.headers)
    counts_before = _samples(before.text, "mcp_server_operations_total")

    created = await client.post(
        "/api/v1/servers",
        headers=admin.headers,
        json={
            "serverName": "metricsprobe",
            "title": "Metrics probe",
            "type": "streamable-http",
            "url": "http://127.0.0.1:9/mcp",
            "scope": "shared_app",
        },
    )
    after = await client.get(METRICS, headers=admin.headers)

    assert created.status_code == 201, created.text
    counts_after = _samples(after.text, "mcp_server_operations_total")
    assert sum(counts_after.values()) >= sum(counts_before.values()) + 1
    assert "mcp_server_operations_total{" in after.text


async def test_get_metrics_without_token_unauthorized(client: AsyncClient) -> None:
    response = await client.get(METRICS)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_get_metrics_as_user_forbidden(client: AsyncClient, settings: Settings) -> None:
    user = make_caller(settings, role="user")

    response = await client.get(METRICS, headers=user.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_get_metrics_expired_admin_token_unauthorized(
    client: AsyncClient, settings: Settings
) -> None:
    token = expired_token(settings, role="admin")

    response = await client.get(METRICS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


async def test_get_metrics_scrape_token_accepted(
    mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    settings = _settings(mongo_uri, db_name, tmp_path, metrics_token=SCRAPE_TOKEN)
    async with _client_for(settings) as http:
        good = await http.get(METRICS, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        wrong = await http.get(METRICS, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}x"})
        missing = await http.get(METRICS)
        admin = await http.get(METRICS, headers=make_caller(settings, role="admin").headers)

    assert good.status_code == 200
    assert "mcp_server_operations_total" in good.text
    assert wrong.status_code == 401
    assert missing.status_code == 401
    assert admin.status_code == 200


async def test_get_metrics_blank_scrape_token_matches_nothing(
    mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    settings = _settings(mongo_uri, db_name, tmp_path, metrics_token="  ")
    async with _client_for(settings) as http:
        response = await http.get(METRICS, headers={"Authorization": "Bearer  "})

    assert response.status_code == 401


async def test_get_metrics_public_needs_no_token(
    mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    settings = _settings(mongo_uri, db_name, tmp_path, metrics_public=True)
    async with _client_for(settings) as http:
        response = await http.get(METRICS)

    assert response.status_code == 200
    assert "http_request_duration_seconds" in response.text


def test_metrics_settings_read_from_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("REGISTRY_METRICS_TOKEN", SCRAPE_TOKEN)
    monkeypatch.setenv("REGISTRY_METRICS_PUBLIC", "true")

    settings = Settings()

    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == SCRAPE_TOKEN
    assert settings.metrics_public is True
    assert SCRAPE_TOKEN not in repr(settings)
