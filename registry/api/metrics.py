"""``GET /metrics``: Prometheus text exposition of ``registry.metrics.REGISTRY``.

Not under ``/api/v1`` (scrapers expect ``/metrics``) but authenticated like the API: an admin
bearer JWT, or the static scrape token ``REGISTRY_METRICS_TOKEN`` when one is configured.
``REGISTRY_METRICS_PUBLIC=true`` opts out of authentication, for scrapers on a private network.
"""

from __future__ import annotations

import hmac

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from registry.api.deps import RuntimeDep, bearer_token
from registry.api.errors import responses
from registry.metrics import REGISTRY
from registry.runtime import Runtime

router = APIRouter(tags=["metrics"])


def _is_scrape_token(runtime: Runtime, token: str) -> bool:
    configured = runtime.settings.metrics_token
    if configured is None:
        return False
    expected = configured.get_secret_value().strip()
    # An empty configured token must not match an empty presented one.
    if not expected:
        return False
    return hmac.compare_digest(token.encode(), expected.encode())


def authorize_metrics(request: Request, runtime: Runtime) -> None:
    """Allow the scrape: public, the static scrape token, or an admin JWT; raise otherwise."""
    if runtime.settings.metrics_public:
        return
    token = bearer_token(request)
    if _is_scrape_token(runtime, token):
        return
    principal = runtime.verifier.verify(token)
    structlog.contextvars.bind_contextvars(principal_id=principal.user_id)
    principal.validate_admin()


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin token or scrape token)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **responses(401, 403),
    },
)
async def get_metrics(request: Request, runtime: RuntimeDep) -> Response:
    authorize_metrics(request, runtime)
    return Response(content=generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
