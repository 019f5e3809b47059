"""UserContext: construction, role handling, ids and reading verified claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from pydantic import ValidationError

from registry.auth import UserContext
from registry.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from tests.unit.auth._material import ADMIN_ID, ALICE_ID, BOB_ID


@dataclass(frozen=True)
class Server:
    author: Any
    scope: str | None


def test_create_user_context_upper_case_role_is_normalised() -> None:
    user = UserContext(user_id=ALICE_ID, role="ADMIN")

    assert user.role == "admin"
    assert user.is_admin is True


def test_create_user_context_unknown_role_rejected() -> None:
    with pytest.raises(ValidationError):
        UserContext(user_id=ALICE_ID, role="owner")


def test_create_user_context_empty_user_id_rejected() -> None:
    with pytest.raises(ValidationError):
        UserContext(user_id="")


def test_update_user_context_frozen() -> None:
    user = UserContext(user_id=ALICE_ID)

    with pytest.raises(ValidationError):
        user.role = "admin"  # type: ignore[misc]  # frozen model, assignment must fail


def test_create_user_context_defaults() -> None:
    user = UserContext(user_id=ALICE_ID)

    assert (user.role, user.username, user.email, user.groups, user.scopes) == (
        "user",
        None,
        None,
        (),
        (),
    )
    assert user.is_admin is False


def test_object_id_hex_subject_is_object_id() -> None:
    assert UserContext(user_id=ALICE_ID).object_id == ObjectId(ALICE_ID)


@pytest.mark.parametrize(
    "subject", ["ci-bot", "65a1b2c3d4e5f6a7b8c9d0e", "65a1b2c3d4e5f6a7b8c9d0zz"]
)
def test_object_id_other_subject_is_none(subject: str) -> None:
    assert UserContext(user_id=subject).object_id is None


def test_has_scope_listed_and_unlisted() -> None:
    user = UserContext(user_id=ALICE_ID, scopes=("read:servers",))

    assert user.has_scope("read:servers") is True
    assert user.has_scope("write:servers") is False


def test_validate_admin_user_denied() -> None:
    with pytest.raises(PermissionDeniedError, match=r"^Admin privileges required$"):
        UserContext(user_id=ALICE_ID).validate_admin()


def test_validate_admin_admin_allowed() -> None:
    UserContext(user_id=ALICE_ID, role="admin").validate_admin()


def test_validate_owner_author_of_private_server_allowed() -> None:
    UserContext(user_id=ALICE_ID).validate_owner(Server(ObjectId(ALICE_ID), "private_user"))


def test_validate_owner_other_users_private_server_not_found() -> None:
    with pytest.raises(NotFoundError, match=r"^Server not found$"):
        UserContext(user_id=BOB_ID).validate_owner(Server(ObjectId(ALICE_ID), "private_user"))


def test_validate_owner_shared_server_denied_for_user() -> None:
    with pytest.raises(PermissionDeniedError, match=r"^Only admins can modify shared servers$"):
        UserContext(user_id=ALICE_ID).validate_owner(Server(ObjectId(ADMIN_ID), "shared_user"))


def test_from_claims_registry_token() -> None:
    user = UserContext.from_claims(
        {
            "sub": ALICE_ID,
            "role": "user",
            "username": "alice",
            "email": "alice@example.com",
            "groups": ["eng", "ops", "eng"],
            "scope": "read:servers write:servers",
        }
    )

    assert user == UserContext(
        user_id=ALICE_ID,
        role="user",
        username="alice",
        email="alice@example.com",
        groups=("eng", "ops"),
        scopes=("read:servers", "write:servers"),
    )


def test_from_claims_librechat_token_with_id_and_upper_case_admin() -> None:
    user = UserContext.from_claims(
        {"id": ALICE_ID, "username": "alice", "provider": "local", "role": "ADMIN"}
    )

    assert (user.user_id, user.role, user.username, user.groups, user.scopes) == (
        ALICE_ID,
        "admin",
        "alice",
        (),
        (),
    )


def test_from_claims_sub_preferred_over_id() -> None:
    assert UserContext.from_claims({"sub": ALICE_ID, "id": BOB_ID}).user_id == ALICE_ID


def test_from_claims_blank_sub_falls_back_to_id() -> None:
    assert UserContext.from_claims({"sub": "  ", "id": BOB_ID}).user_id == BOB_ID


@pytest.mark.parametrize("claims", [{}, {"sub": ""}, {"id": 42}, {"sub": None, "id": " "}])
def test_from_claims_no_subject_rejected(claims: dict[str, Any]) -> None:
    with pytest.raises(AuthenticationError, match=r"^Token has no subject \(sub or id claim\)$"):
        UserContext.from_claims(claims)


@pytest.mark.parametrize("role", [None, "USER", "moderator", 1, ["admin"]])
def test_from_claims_non_admin_role_is_user(role: object) -> None:
    assert UserContext.from_claims({"sub": ALICE_ID, "role": role}).role == "user"


def test_from_claims_scope_string_and_scopes_list_merged() -> None:
    user = UserContext.from_claims({"sub": ALICE_ID, "scope": "a b", "scopes": ["b", "c"]})

    assert user.scopes == ("a", "b", "c")


def test_from_claims_scopes_list_only() -> None:
    assert UserContext.from_claims({"sub": ALICE_ID, "scopes": ["x"]}).scopes == ("x",)


def test_from_claims_non_string_contact_fields_ignored() -> None:
    user = UserContext.from_claims({"sub": ALICE_ID, "username": 5, "email": ["a@b"]})

    assert (user.username, user.email) == (None, None)


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({"scope": ["a"]}, "scope"),
        ({"scopes": "a b"}, "scopes"),
        ({"scopes": ["a", 1]}, "scopes"),
        ({"groups": "eng"}, "groups"),
        ({"groups": [None]}, "groups"),
    ],
)
def test_from_claims_malformed_list_claim_rejected(claims: dict[str, Any], name: str) -> None:
    with pytest.raises(AuthenticationError, match=f"^Malformed token claim: {name}$"):
        UserContext.from_claims({"sub": ALICE_ID, **claims})
