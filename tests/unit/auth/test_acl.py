"""Access decisions: the server matrix, filter/predicate agreement, tokens and tools."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from registry.auth import (
    SHARED_SCOPES,
    Action,
    ServerScope,
    UserContext,
    authorize_server,
    authorize_server_create,
    authorize_token_manage,
    authorize_token_read_value,
    can_see_server,
    server_visibility_filter,
    token_owner_filter,
    tool_allowed_for,
)
from registry.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from tests.unit.auth._material import ADMIN_ID, ALICE_ID, BOB_ID


@dataclass(frozen=True)
class Server:
    author: Any
    scope: str | None


ADMIN = UserContext(user_id=ADMIN_ID, role="admin")
ALICE = UserContext(user_id=ALICE_ID, groups=("eng",))
BOB = UserContext(user_id=BOB_ID)
USERS = {"admin": ADMIN, "author": ALICE, "other": BOB}

ALLOWED = "allowed"
MODIFY = "Only admins can modify shared servers"
DELETE = "Only admins can delete shared servers"
REFRESH = "Only admins can refresh shared servers"
MISSING = "Server not found"

# For a user (author or not) looking at a shared server.
_SHARED_FOR_USER = {
    Action.READ: ALLOWED,
    Action.USE: ALLOWED,
    Action.UPDATE: MODIFY,
    Action.TOGGLE: MODIFY,
    Action.DELETE: DELETE,
    Action.REFRESH: REFRESH,
}
EXPECTED: dict[tuple[str, str], dict[Action, str]] = {
    ("admin", "private_user"): dict.fromkeys(Action, ALLOWED),
    ("admin", "shared_user"): dict.fromkeys(Action, ALLOWED),
    ("admin", "shared_app"): dict.fromkeys(Action, ALLOWED),
    ("author", "private_user"): dict.fromkeys(Action, ALLOWED),
    ("author", "shared_user"): _SHARED_FOR_USER,
    ("author", "shared_app"): _SHARED_FOR_USER,
    ("other", "private_user"): dict.fromkeys(Action, MISSING),
    ("other", "shared_user"): _SHARED_FOR_USER,
    ("other", "shared_app"): _SHARED_FOR_USER,
}
MATRIX = [
    (who, scope, action, EXPECTED[(who, scope)][action])
    for who, scope, action in itertools.product(USERS, [s.value for s in ServerScope], Action)
]


@pytest.mark.parametrize(("who", "scope", "action", "expected"), MATRIX)
def test_authorize_server_matrix(who: str, scope: str, action: Action, expected: str) -> None:
    """Alice authored every server in the matrix, including the shared ones."""
    server = Server(author=ObjectId(ALICE_ID), scope=scope)
    user = USERS[who]

    if expected == ALLOWED:
        authorize_server(user, action, server)
        return
    error_type = NotFoundError if expected == MISSING else PermissionDeniedError
    with pytest.raises(error_type) as caught:
        authorize_server(user, action, server)
    assert (caught.value.message, caught.value.resource) == (expected, "server")


def test_authorize_server_string_author_matches_by_value() -> None:
    authorize_server(ALICE, Action.DELETE, Server(author=ALICE_ID, scope="private_user"))


@pytest.mark.parametrize("scope", [None, "public"])
def test_authorize_server_unknown_scope_hidden_from_users(scope: str | None) -> None:
    server = Server(author=ObjectId(ALICE_ID), scope=scope)

    with pytest.raises(NotFoundError):
        authorize_server(ALICE, Action.READ, server)
    authorize_server(ADMIN, Action.DELETE, server)


def test_server_visibility_filter_admin_sees_everything() -> None:
    assert server_visibility_filter(ADMIN) == {}


def test_server_visibility_filter_user_object_id_author() -> None:
    assert server_visibility_filter(ALICE) == {
        "$or": [
            {"scope": {"$in": ["shared_app", "shared_user"]}},
            {"scope": "private_user", "author": ObjectId(ALICE_ID)},
        ]
    }


def test_server_visibility_filter_non_object_id_subject_compared_as_string() -> None:
    user = UserContext(user_id="ci-bot")

    assert server_visibility_filter(user)["$or"][1] == {"scope": "private_user", "author": "ci-bot"}


def _matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    """A tiny MongoDB matcher for the operators the filters use: $or, $in and equality."""
    for field, condition in query.items():
        if field == "$or":
            if not any(_matches(document, branch) for branch in condition):
                return False
        elif isinstance(condition, dict):
            if document.get(field) not in condition["$in"]:
                return False
        elif document.get(field) != condition:
            return False
    return True


_FILTER_USERS = [
    ADMIN,
    ALICE,
    BOB,
    UserContext(user_id="ci-bot"),
    UserContext(user_id="ops-bot", role="admin"),
]
# Documents store ObjectId authors; a non-ObjectId subject can only match a string author.
_AUTHORS: list[Any] = [ObjectId(ALICE_ID), ObjectId(BOB_ID), "ci-bot", "someone", None]
_SCOPES: list[str | None] = [*(s.value for s in ServerScope), None, "bogus"]


@pytest.mark.parametrize("user", _FILTER_USERS, ids=lambda u: f"{u.role}-{u.user_id}")
def test_server_visibility_filter_agrees_with_can_see_server(user: UserContext) -> None:
    query = server_visibility_filter(user)
    for author, scope in itertools.product(_AUTHORS, _SCOPES):
        document = {"author": author, "scope": scope}
        assert _matches(document, query) is can_see_server(user, Server(author, scope)), document


def test_authorize_server_create_user_private_allowed() -> None:
    authorize_server_create(ALICE, "private_user")


@pytest.mark.parametrize("scope", SHARED_SCOPES)
def test_authorize_server_create_user_shared_denied(scope: str) -> None:
    with pytest.raises(PermissionDeniedError, match=r"^Only admins can create shared servers$"):
        authorize_server_create(ALICE, scope)


@pytest.mark.parametrize("scope", [s.value for s in ServerScope])
def test_authorize_server_create_admin_any_scope_allowed(scope: str) -> None:
    authorize_server_create(ADMIN, scope)


@pytest.mark.parametrize("user", [ADMIN, ALICE])
def test_authorize_server_create_unknown_scope_invalid(user: UserContext) -> None:
    with pytest.raises(InvalidRequestError, match=r"^Unknown server scope: 'global'$"):
        authorize_server_create(user, "global")


def test_token_owner_filter_user_sees_own() -> None:
    assert token_owner_filter(ALICE) == {"userId": ObjectId(ALICE_ID)}


def test_token_owner_filter_user_naming_self_allowed() -> None:
    assert token_owner_filter(ALICE, user_id=ALICE_ID) == {"userId": ObjectId(ALICE_ID)}


def test_token_owner_filter_user_naming_other_denied() -> None:
    with pytest.raises(PermissionDeniedError, match=r"^Only admins can list other users' tokens$"):
        token_owner_filter(ALICE, user_id=BOB_ID)


def test_token_owner_filter_admin_all_or_one_user() -> None:
    assert token_owner_filter(ADMIN) == {}
    assert token_owner_filter(ADMIN, user_id=BOB_ID) == {"userId": ObjectId(BOB_ID)}


def test_token_owner_filter_non_object_id_subject_matches_nothing_stored() -> None:
    assert token_owner_filter(UserContext(user_id="ci-bot")) == {"userId": "ci-bot"}


@pytest.mark.parametrize("owner", [ObjectId(ALICE_ID), ALICE_ID])
def test_authorize_token_read_value_owner_allowed(owner: ObjectId | str) -> None:
    authorize_token_read_value(ALICE, owner)


@pytest.mark.parametrize("user", [ADMIN, BOB])
def test_authorize_token_read_value_not_owner_not_found(user: UserContext) -> None:
    """Even admins never read another user's token value."""
    with pytest.raises(NotFoundError, match=r"^Token not found or expired$") as caught:
        authorize_token_read_value(user, ObjectId(ALICE_ID))
    assert caught.value.resource == "token"


@pytest.mark.parametrize("user", [ADMIN, ALICE])
def test_authorize_token_manage_owner_or_admin_allowed(user: UserContext) -> None:
    authorize_token_manage(user, ObjectId(ALICE_ID))


def test_authorize_token_manage_other_user_not_found() -> None:
    with pytest.raises(NotFoundError, match=r"^Token not found or expired$"):
        authorize_token_manage(BOB, ObjectId(ALICE_ID))


def test_authorize_token_manage_non_object_id_owner_matches_subject() -> None:
    bot = UserContext(user_id="ci-bot")

    authorize_token_manage(bot, "ci-bot")
    with pytest.raises(NotFoundError):
        authorize_token_manage(bot, ObjectId(ALICE_ID))


@pytest.mark.parametrize(
    ("user", "roles", "groups", "allowed"),
    [
        (ALICE, [], [], True),
        (ADMIN, ["nobody"], ["nobody"], True),
        (ALICE, ["USER"], [], True),
        (ALICE, ["admin"], [], False),
        (ALICE, [], ["eng"], True),
        (ALICE, ["admin"], ["ops"], False),
        (BOB, [], ["eng"], False),
    ],
)
def test_tool_allowed_for_roles_and_groups(
    user: UserContext, roles: list[str], groups: list[str], allowed: bool
) -> None:
    assert tool_allowed_for(user, allowed_roles=roles, allowed_groups=groups) is allowed
