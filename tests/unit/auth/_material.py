"""Constants and key material shared by the auth unit tests."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

HS_SECRET = "unit-test-hs256-secret-0123456789abcdef0123456789"
ISSUER = "https://registry.test"
AUDIENCE = "mcp-registry"
ALICE_ID = "65a1b2c3d4e5f6a7b8c9d0e1"
BOB_ID = "65a1b2c3d4e5f6a7b8c9d0e2"
ADMIN_ID = "65a1b2c3d4e5f6a7b8c9d0ff"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def key_pair(key: PrivateKeyTypes) -> KeyPair:
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


def new_rsa_pair() -> KeyPair:
    return key_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def new_ec_pair() -> KeyPair:
    return key_pair(ec.generate_private_key(ec.SECP256R1()))


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], *, alg: str = "none") -> str:
    """A JWT with an empty signature, as an attacker would craft ``alg: none``."""
    return f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims)}."
