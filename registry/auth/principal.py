"""The authenticated caller (``UserContext``) and how it is read from verified JWT claims.

User ids: the external app (LibreChat) issues tokens whose ``id`` is a MongoDB ObjectId
(24 hex characters), and the registry's own tokens put it in ``sub``. Other subjects (an
operator's ``sub`` such as ``"ci-bot"``) are accepted for API use, but anything stored per user
(``tokens.userId``, ``mcpservers.author``) is keyed by an ObjectId, so ``object_id`` is ``None``
for them and the caller decides what that means (usually: owns nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.auth._ids import as_object_id
from registry.auth.acl import Action, ServerLike, authorize_server, effective_role
from registry.errors import AuthenticationError, PermissionDeniedError

Role = Literal["admin", "user"]


class UserContext(BaseModel):
    """Who is calling: identity, role and grants taken from a verified token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = Field(min_length=1)
    role: Role = "user"
    username: str | None = None
    email: str | None = None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    @field_validator("role", mode="before")
    @classmethod
    def _lower_role(cls, value: object) -> object:
        # LibreChat spells roles in upper case ("ADMIN", "USER").
        return value.lower() if isinstance(value, str) else value

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def object_id(self) -> ObjectId | None:
        """``user_id`` as an ObjectId, or None when the subject is not one (see module doc)."""
        return as_object_id(self.user_id)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def validate_admin(self) -> None:
        """Raise PermissionDeniedError unless the caller is an admin."""
        if not self.is_admin:
            raise PermissionDeniedError("Admin privileges required")

    def validate_owner(self, server: ServerLike) -> None:
        """Raise unless the caller may manage ``server`` (admin, or author of a private server).

        Raises NotFoundError when the caller cannot see the server at all and
        PermissionDeniedError when it can see but not manage it (see ``acl.authorize_server``).
        """
        authorize_server(self, Action.UPDATE, server)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> UserContext:
        """Build the caller from verified JWT claims; AuthenticationError when they are unusable.

        ``sub`` wins over LibreChat's ``id``; ``role`` is case-insensitive and anything but
        admin means user; scopes come from ``scope`` (space-separated) and ``scopes`` (list).
        A token that names scopes acts as an admin only with the ``admin`` scope
        (``acl.effective_role``).
        """
        user_id = _first_text(claims, "sub", "id")
        if user_id is None:
            raise AuthenticationError("Token has no subject (sub or id claim)")
        role = claims.get("role")
        scopes = _text_list(claims, "scopes")
        scope = claims.get("scope")
        if scope is not None:
            if not isinstance(scope, str):
                raise AuthenticationError("Malformed token claim: scope")
            scopes = scope.split() + scopes
        claimed = "admin" if isinstance(role, str) and role.lower() == "admin" else "user"
        return cls(
            user_id=user_id,
            role=effective_role(claimed, scopes),
            username=_optional_text(claims, "username"),
            email=_optional_text(claims, "email"),
            groups=tuple(dict.fromkeys(_text_list(claims, "groups"))),
            scopes=tuple(dict.fromkeys(scopes)),
        )


def _first_text(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _optional_text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


def _text_list(claims: Mapping[str, Any], name: str) -> list[str]:
    value = claims.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthenticationError(f"Malformed token claim: {name}")
    return value
