"""Key material for the auth unit tests (generated once per session, no I/O)."""

from __future__ import annotations

import pytest

from tests.unit.auth._material import KeyPair, new_ec_pair, new_rsa_pair


@pytest.fixture(scope="session")
def rsa_keys() -> KeyPair:
    return new_rsa_pair()


@pytest.fixture(scope="session")
def other_rsa_keys() -> KeyPair:
    return new_rsa_pair()


@pytest.fixture(scope="session")
def ec_keys() -> KeyPair:
    return new_ec_pair()
