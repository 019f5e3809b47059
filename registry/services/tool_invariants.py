"""The catalog's invariants, enforced in this one place (design 000 "Data Quality + Safety").

1. An ``unselected`` tool cannot be ``active`` (InvariantError, 422).
2. A ``deleted`` tool cannot be enabled or exposed again (ConflictError, 409).
3. A disabled or inactive server exposes no tools: its tools cannot be activated while it is
   inactive (ConflictError, 409), and ``is_exposed`` / ``EXPOSED_FILTER`` never count them.

A ``stale`` tool (gone upstream) can only be unselected by people; the sync puts it back to
``selected`` when it reappears.
"""

from __future__ import annotations

from packages.models.tools import (
    EXPOSED_FILTER,
    ExposureState,
    RegistrationState,
    is_exposed_state,
)
from registry.errors import ConflictError, InvariantError

__all__ = ["EXPOSED_FILTER", "check_tool_change", "is_exposed", "server_exposes_tools"]

INACTIVE_SERVER_STATUSES = frozenset({"inactive"})


def server_exposes_tools(server_status: str | None) -> bool:
    """False for a disabled (``inactive``) server; a missing status means ``active``.

    A server in ``error`` keeps its exposure: the failure may be transient, and flapping the
    shared ``toolFunctions`` would disturb the external app.
    """
    return (server_status or "active") not in INACTIVE_SERVER_STATUSES


def is_exposed(
    *, exposure: ExposureState, registration: RegistrationState, server_status: str | None
) -> bool:
    """Whether a tool in these states is offered to clients."""
    return is_exposed_state(exposure, registration) and server_exposes_tools(server_status)


def check_tool_change(
    *,
    current_exposure: ExposureState,
    current_registration: RegistrationState,
    new_exposure: ExposureState | None,
    new_registration: RegistrationState | None,
    server_status: str | None,
) -> None:
    """Raise unless moving a tool to the requested states keeps every invariant.

    ``None`` means "unchanged". Raises ConflictError (409) for a deleted tool, a stale tool
    being selected, or activation on an inactive server; InvariantError (422) for an
    unselected active tool.
    """
    exposure = new_exposure or current_exposure
    registration = new_registration or current_registration
    if current_exposure == "deleted" and exposure != "deleted":
        raise ConflictError(
            "Tool is deleted; a deleted tool cannot be enabled or exposed again",
            resource="tool",
        )
    if new_registration == "stale" and current_registration != "stale":
        raise InvariantError(
            "registrationState 'stale' is set by synchronisation only", resource="tool"
        )
    if new_registration == "selected" and current_registration == "stale":
        raise ConflictError(
            "Tool is stale (no longer listed by its upstream); it is selected again "
            "automatically when it reappears",
            resource="tool",
        )
    if exposure == "active" and registration == "unselected":
        raise InvariantError(
            "An unselected tool cannot be active; select it (registrationState 'selected') "
            "or choose another exposureState",
            resource="tool",
        )
    if (
        new_exposure == "active"
        and current_exposure != "active"
        and not server_exposes_tools(server_status)
    ):
        raise ConflictError(
            "The server is disabled; a disabled or inactive server exposes no tools. "
            "Enable the server before activating its tools",
            resource="tool",
        )
