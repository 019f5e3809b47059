"""Test data builders shared by integration and e2e tests: principals and their tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from registry.auth import TokenIssuer, UserContext
from registry.config import Settings


@dataclass(frozen=True)
class Caller:
    """A user of the API with a valid bearer token."""

    user: UserContext
    token: str

    @property
    def id(self) -> str:
        return self.user.user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_caller(
    settings: Settings,
    *,
    role: str = "user",
    user_id: str | None = None,
    username: str | None = None,
    groups: tuple[str, ...] = (),
    scopes: tuple[str, ...] = (),
    expires_in: timedelta = timedelta(hours=1),
) -> Caller:
    """A principal (fresh ObjectId unless given) with an access token signed for ``settings``."""
    user = UserContext(
        user_id=user_id or str(ObjectId()),
        role=role,
        username=username or f"{role}-user",
        groups=groups,
        scopes=scopes,
    )
    token = TokenIssuer.from_settings(settings).issue(
        user=user, token_type="access", expires_in=expires_in
    )
    return Caller(user=user, token=token)


def expired_token(settings: Settings, *, role: str = "user") -> str:
    """A correctly signed access token whose ``exp`` lies an hour in the past."""
    assert settings.jwt_secret is not None
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    issuer = TokenIssuer(
        hs256_secret=settings.jwt_secret.get_secret_value(), clock=lambda: two_hours_ago
    )
    user = UserContext(user_id=str(ObjectId()), role=role)
    return issuer.issue(user=user, token_type="access", expires_in=timedelta(hours=1))
