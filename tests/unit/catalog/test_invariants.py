"""Every catalog invariant, enforced by registry.services.tool_invariants."""

from __future__ import annotations

import pytest

from packages.models.tools import ExposureState, RegistrationState
from registry.errors import ConflictError, InvariantError
from registry.services.tool_invariants import check_tool_change, is_exposed


def change(
    *,
    exposure: ExposureState = "active",
    registration: RegistrationState = "selected",
    new_exposure: ExposureState | None = None,
    new_registration: RegistrationState | None = None,
    server_status: str | None = "active",
) -> None:
    check_tool_change(
        current_exposure=exposure,
        current_registration=registration,
        new_exposure=new_exposure,
        new_registration=new_registration,
        server_status=server_status,
    )


def test_unselect_active_tool_is_rejected() -> None:
    with pytest.raises(InvariantError, match="unselected tool cannot be active"):
        change(new_registration="unselected")


def test_activate_unselected_tool_is_rejected() -> None:
    with pytest.raises(InvariantError, match="unselected tool cannot be active"):
        change(exposure="draft", registration="unselected", new_exposure="active")


def test_unselect_and_disable_together_is_allowed() -> None:
    change(new_registration="unselected", new_exposure="disabled")


@pytest.mark.parametrize("target", ["active", "draft", "disabled"])
def test_deleted_tool_cannot_be_enabled_or_exposed(target: ExposureState) -> None:
    with pytest.raises(ConflictError, match="deleted tool cannot be enabled or exposed"):
        change(exposure="deleted", new_exposure=target)


def test_deleted_tool_keeps_other_changes() -> None:
    change(exposure="deleted", new_registration="unselected")


def test_activate_tool_of_inactive_server_is_rejected() -> None:
    with pytest.raises(ConflictError, match="disabled or inactive server exposes no tools"):
        change(exposure="disabled", new_exposure="active", server_status="inactive")


def test_disable_tool_of_inactive_server_is_allowed() -> None:
    change(new_exposure="disabled", server_status="inactive")


def test_select_stale_tool_is_rejected() -> None:
    with pytest.raises(ConflictError, match="stale"):
        change(registration="stale", new_registration="selected")


def test_mark_stale_by_hand_is_rejected() -> None:
    with pytest.raises(InvariantError, match="synchronisation only"):
        change(new_registration="stale")


@pytest.mark.parametrize(
    ("exposure", "registration", "status", "expected"),
    [
        ("active", "selected", "active", True),
        ("active", "selected", None, True),
        ("active", "selected", "error", True),
        ("active", "selected", "inactive", False),
        ("draft", "selected", "active", False),
        ("disabled", "selected", "active", False),
        ("deleted", "selected", "active", False),
        ("active", "unselected", "active", False),
        ("active", "stale", "active", False),
    ],
)
def test_is_exposed_only_active_selected_on_enabled_server(
    exposure: ExposureState, registration: RegistrationState, status: str | None, expected: bool
) -> None:
    assert (
        is_exposed(exposure=exposure, registration=registration, server_status=status) is expected
    )
