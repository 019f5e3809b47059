"""The committed OpenAPI document and the error mapping stay in step with the code."""

from __future__ import annotations

import inspect

from registry import errors
from registry.api.errors import STATUS_BY_ERROR, status_for
from scripts.export_openapi import OPENAPI_FILE, render_openapi


def test_served_openapi_matches_committed_document() -> None:
    assert render_openapi() == OPENAPI_FILE.read_text(encoding="utf-8"), (
        "docs/openapi.yaml is out of date: run python scripts/export_openapi.py"
    )


def test_every_registry_error_has_a_status_mapping() -> None:
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RegistryError)
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert cls in STATUS_BY_ERROR, f"{cls.__name__} has no HTTP status mapping"


def test_status_for_walks_the_hierarchy() -> None:
    class NarrowerNotFound(errors.NotFoundError):
        pass

    assert status_for(NarrowerNotFound("x")) == 404
    assert (
        status_for(errors.StaleUpdateError("x", current_updated_at=None, provided_updated_at=None))
        == 409
    )
