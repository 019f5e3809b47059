"""Verifying bearer JWTs into a ``UserContext`` and issuing the registry's own tokens.

Only two algorithms exist here: HS256 with ``JWT_SECRET`` (the external app's convention) and
RS256 with ``JWT_PUBLIC_KEY`` / ``JWT_PRIVATE_KEY``. The token header's ``alg`` picks the key,
and an algorithm without a configured key (``none``, HS384, HS256 when only RS256 is set, ...)
is refused before any signature check, so an RSA public key is never used as an HMAC secret.

Token types: tokens issued here carry ``token_use`` (``access`` or ``refresh``); the external
app's tokens carry none and count as access tokens. A token is only accepted as the type the
caller expects, so a long-lived refresh token cannot call the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from registry.auth.acl import grantable_scopes
from registry.auth.principal import UserContext
from registry.config import Settings
from registry.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError

TokenType = Literal["access", "refresh"]
ACCESS: TokenType = "access"
REFRESH: TokenType = "refresh"

TOKEN_USE_CLAIM = "token_use"
ACCESS_TTL_CLAIM = "access_ttl"
DEFAULT_LEEWAY = timedelta(seconds=10)

_RESERVED_CLAIMS = frozenset(
    {"sub", "role", "username", "email", "groups", "scope", TOKEN_USE_CLAIM}
    | {"iat", "exp", "nbf", "jti", "iss", "aud"}
)

# Most specific first: InvalidSignatureError is a DecodeError.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "Token expired"),
    (jwt.ImmatureSignatureError, "Token not yet valid"),
    (jwt.InvalidSignatureError, "Invalid token signature"),
    (jwt.InvalidAlgorithmError, "Unsupported token algorithm"),
    (jwt.InvalidIssuerError, "Invalid token issuer"),
    (jwt.InvalidAudienceError, "Invalid token audience"),
    (jwt.InvalidIssuedAtError, "Invalid token issue time"),
    (InvalidSubjectError, "Invalid token subject"),
    (InvalidJTIError, "Invalid token id"),
    (jwt.DecodeError, "Malformed token"),
)


class AuthConfigurationError(RuntimeError):
    """The JWT keys in the settings are missing, unreadable or inconsistent."""


class IssuedTokens(BaseModel):
    """An access/refresh pair as ``POST /api/v1/tokens/generate`` returns it."""

    model_config = ConfigDict(frozen=True)

    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_in: int
    refresh_expires_in: int
    token_type: Literal["Bearer"] = "Bearer"
    scope: str


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, secret-free reason for a rejected token."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token missing required claim: {exc.claim}"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "Invalid token"


def _pem(value: SecretStr) -> bytes:
    # Keys passed through environment variables often have their newlines escaped.
    return value.get_secret_value().strip().replace("\\n", "\n").encode()


def _load_public_key(value: SecretStr) -> RSAPublicKey:
    try:
        key = load_pem_public_key(_pem(value))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AuthConfigurationError("JWT_PUBLIC_KEY is not a PEM-encoded public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise AuthConfigurationError("JWT_PUBLIC_KEY must be an RSA key (RS256)")
    return key


def _load_private_key(value: SecretStr) -> RSAPrivateKey:
    try:
        key = load_pem_private_key(_pem(value), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuthConfigurationError(
            "JWT_PRIVATE_KEY is not an unencrypted PEM-encoded private key"
        ) from exc
    if not isinstance(key, RSAPrivateKey):
        raise AuthConfigurationError("JWT_PRIVATE_KEY must be an RSA key (RS256)")
    return key


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenVerifier:
    """Checks bearer tokens: signature, algorithm, ``exp``, ``iss``/``aud`` and token type."""

    def __init__(
        self,
        *,
        hs256_secret: str | None = None,
        rs256_public_key: RSAPublicKey | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: timedelta = DEFAULT_LEEWAY,
    ) -> None:
        keys: dict[str, str | RSAPublicKey] = {}
        if hs256_secret:
            keys["HS256"] = hs256_secret
        if rs256_public_key is not None:
            keys["RS256"] = rs256_public_key
        if not keys:
            raise AuthConfigurationError(
                "No JWT verification key configured: set JWT_SECRET (HS256) or "
                "JWT_PUBLIC_KEY (RS256)"
            )
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier for ``settings``; AuthConfigurationError when no usable key is set.

        Without JWT_PUBLIC_KEY, the public half of JWT_PRIVATE_KEY verifies RS256 tokens, so
        the tokens this service issues are always accepted by its own API.
        """
        public_key: RSAPublicKey | None = None
        if settings.jwt_public_key is not None:
            public_key = _load_public_key(settings.jwt_public_key)
        elif settings.jwt_private_key is not None:
            public_key = _load_private_key(settings.jwt_private_key).public_key()
        return cls(
            hs256_secret=_secret(settings.jwt_secret),
            rs256_public_key=public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def decode(self, token: str, *, expected_type: TokenType = "access") -> dict[str, Any]:
        """The verified claims of ``token``; AuthenticationError when it must be refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("Malformed token") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._keys:
            raise AuthenticationError("Unsupported token algorithm")
        try:
            claims = jwt.decode(
                token,
                self._keys[algorithm],
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(_reason(exc)) from exc
        token_use = claims.get(TOKEN_USE_CLAIM, ACCESS)
        if token_use not in (ACCESS, REFRESH):
            raise AuthenticationError("Unsupported token type")
        if token_use != expected_type:
            raise AuthenticationError(
                "Refresh token cannot be used as access token"
                if token_use == REFRESH
                else "Access token cannot be used as refresh token"
            )
        return claims

    def verify(self, token: str, *, expected_type: TokenType = "access") -> UserContext:
        """The caller ``token`` identifies; AuthenticationError when it must be refused."""
        return UserContext.from_claims(self.decode(token, expected_type=expected_type))


class TokenIssuer:
    """Signs the registry's own tokens: RS256 when a private key is set, else HS256.

    A service configured with JWT_PUBLIC_KEY alone verifies tokens but cannot issue any;
    ``issue`` then raises AuthConfigurationError.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None = None,
        rs256_private_key: RSAPrivateKey | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        max_expires_hours: int = 24,
        refresh_expires_hours: int = 24 * 7,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._key: str | RSAPrivateKey | None
        if rs256_private_key is not None:
            self._algorithm: str | None = "RS256"
            self._key = rs256_private_key
        elif hs256_secret:
            self._algorithm = "HS256"
            self._key = hs256_secret
        else:
            self._algorithm = None
            self._key = None
        self._issuer = issuer
        self._audience = audience
        self.max_expires_hours = max_expires_hours
        self.refresh_expires_hours = refresh_expires_hours
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenIssuer:
        """The issuer for ``settings``; AuthConfigurationError for unreadable or mismatched keys."""
        private_key: RSAPrivateKey | None = None
        if settings.jwt_private_key is not None:
            private_key = _load_private_key(settings.jwt_private_key)
            if settings.jwt_public_key is not None:
                public_key = _load_public_key(settings.jwt_public_key)
                if public_key.public_numbers() != private_key.public_key().public_numbers():
                    raise AuthConfigurationError("JWT_PRIVATE_KEY does not match JWT_PUBLIC_KEY")
        return cls(
            hs256_secret=_secret(settings.jwt_secret),
            rs256_private_key=private_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            max_expires_hours=settings.jwt_max_expires_hours,
            refresh_expires_hours=settings.jwt_refresh_expires_hours,
        )

    @property
    def algorithm(self) -> str | None:
        """``RS256``, ``HS256``, or None when no signing key is configured."""
        return self._algorithm

    def now(self) -> datetime:
        return self._clock()

    def issue(
        self,
        *,
        user: UserContext,
        token_type: TokenType,
        expires_in: timedelta,
        scopes: Sequence[str] | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token for ``user`` (scopes default to the user's own).

        Raises AuthConfigurationError without a signing key, InvalidRequestError for a scope
        that is empty or contains whitespace, and ValueError for a non-positive lifetime or
        ``extra_claims`` overriding a standard claim.
        """
        if self._algorithm is None or self._key is None:
            raise AuthConfigurationError(
                "No JWT signing key configured: set JWT_PRIVATE_KEY (RS256) or JWT_SECRET (HS256)"
            )
        lifetime = int(expires_in.total_seconds())
        if lifetime < 1:
            raise ValueError("expires_in must be at least one second")
        extra = dict(extra_claims or {})
        overridden = sorted(_RESERVED_CLAIMS.intersection(extra))
        if overridden:
            raise ValueError(f"extra_claims cannot override: {', '.join(overridden)}")
        granted = _check_scopes(user.scopes if scopes is None else scopes)
        issued_at = int(self._clock().timestamp())
        claims: dict[str, Any] = {
            **extra,
            "sub": user.user_id,
            "role": user.role,
            "groups": list(user.groups),
            "scope": " ".join(granted),
            TOKEN_USE_CLAIM: token_type,
            "iat": issued_at,
            "exp": issued_at + lifetime,
            "jti": uuid.uuid4().hex,
        }
        optional = {
            "username": user.username,
            "email": user.email,
            "iss": self._issuer,
            "aud": self._audience,
        }
        claims.update({name: value for name, value in optional.items() if value is not None})
        return jwt.encode(claims, self._key, algorithm=self._algorithm)

    def issue_pair(
        self,
        *,
        user: UserContext,
        requested_scopes: Sequence[str] | None,
        expires_in_hours: int,
    ) -> IssuedTokens:
        """An access token and a refresh token for the caller.

        ``requested_scopes`` (None: all of the caller's) must be among the scopes the caller
        may grant (``acl.grantable_scopes``), else PermissionDeniedError naming the missing
        ones; a caller whose token names scopes cannot issue one that names none (it would
        have the role's full rights). ``expires_in_hours`` must lie in 1..max_expires_hours,
        else InvalidRequestError.
        """
        if not 1 <= expires_in_hours <= self.max_expires_hours:
            raise InvalidRequestError(
                f"expires_in_hours must be between 1 and {self.max_expires_hours}",
                resource="token",
            )
        scopes = _check_scopes(user.scopes if requested_scopes is None else requested_scopes)
        if user.scopes and not scopes:
            raise PermissionDeniedError(
                "A token limited to scopes can only issue tokens limited to some of them",
                resource="token",
            )
        grantable = grantable_scopes(user)
        not_granted = [s for s in scopes if grantable is not None and s not in grantable]
        if not_granted:
            raise PermissionDeniedError(
                f"Requested scopes not granted to the caller: {', '.join(not_granted)}",
                resource="token",
                details={"scopes": not_granted},
            )
        access_ttl = expires_in_hours * 3600
        refresh_ttl = self.refresh_expires_hours * 3600
        return IssuedTokens(
            access_token=self.issue(
                user=user,
                token_type=ACCESS,
                expires_in=timedelta(seconds=access_ttl),
                scopes=scopes,
            ),
            refresh_token=self.issue(
                user=user,
                token_type=REFRESH,
                expires_in=timedelta(seconds=refresh_ttl),
                scopes=scopes,
                extra_claims={ACCESS_TTL_CLAIM: access_ttl},
            ),
            expires_in=access_ttl,
            refresh_expires_in=refresh_ttl,
            scope=" ".join(scopes),
        )


def refresh_access_token(
    *, verifier: TokenVerifier, issuer: TokenIssuer, refresh_token: str
) -> IssuedTokens:
    """A new access token for the identity and scopes of a valid refresh token.

    The refresh token itself is returned unchanged (no rotation): tokens are stateless and
    nothing revokes an old refresh token yet, so rotating would not shorten its life. The new
    access token lives as long as the original one did, capped by the current maximum.
    Raises AuthenticationError when ``refresh_token`` is not a valid refresh token.
    """
    claims = verifier.decode(refresh_token, expected_type=REFRESH)
    user = UserContext.from_claims(claims)
    access_ttl = claims.get(ACCESS_TTL_CLAIM)
    if not isinstance(access_ttl, int) or access_ttl < 1:
        raise AuthenticationError("Malformed refresh token")
    access_ttl = min(access_ttl, issuer.max_expires_hours * 3600)
    remaining = int(claims["exp"]) - int(issuer.now().timestamp())
    return IssuedTokens(
        access_token=issuer.issue(
            user=user,
            token_type=ACCESS,
            expires_in=timedelta(seconds=access_ttl),
            scopes=user.scopes,
        ),
        refresh_token=refresh_token,
        expires_in=access_ttl,
        refresh_expires_in=max(remaining, 0),
        scope=" ".join(user.scopes),
    )


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    """``scopes`` without duplicates; InvalidRequestError for an empty or spaced scope."""
    if isinstance(scopes, str):
        raise InvalidRequestError("Scopes must be a list of strings", resource="token")
    for scope in scopes:
        if not scope or scope != "".join(scope.split()):
            raise InvalidRequestError(
                "Scopes must be non-empty and contain no whitespace", resource="token"
            )
    return list(dict.fromkeys(scopes))
