"""The versioned REST API: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

api_router = APIRouter(prefix="/api/v1")

# Resource routers are included below, one line each.
