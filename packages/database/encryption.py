"""LibreChat-compatible encryption of stored credentials (``CREDS_KEY`` / ``CREDS_IV``).

The external app shares our MongoDB and reads the credentials we write, so the formats are
LibreChat's, byte for byte (see ``tests/fixtures/interop/librechat-crypto-vectors.json``):

* v1 ``encrypt``: AES-256-CBC + PKCS7 under the fixed IV ``CREDS_IV``; bare hex ciphertext.
* v2 ``encryptV2``: a random 16-byte IV per value; ``hex(iv) + ":" + hex(ciphertext)``,
  AES-256-CBC + PKCS7. This is the only format we write.
* v3 ``encryptV3``: ``"v3:" + hex(iv) + ":" + hex(ciphertext)``, AES-256-CTR with the IV as
  the initial counter block, no padding.
* ``hashToken``: the SHA-256 hex digest of the UTF-8 text.

Exceptions::

    EncryptionError
     ├── InvalidKeyError     bad CREDS_KEY / CREDS_IV material
     └── DecryptionError     corrupt or undecryptable value (bad hex, length, padding, UTF-8)

No message, field or chained cause ever carries a key, IV, ciphertext or plaintext.
"""

from __future__ import annotations

import hashlib
import os
import re

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DecryptionError",
    "EncryptionError",
    "EncryptionService",
    "InvalidKeyError",
    "configure_encryption",
    "decrypt_value",
    "encrypt_value",
    "generate_key_material",
    "get_encryption",
]

KEY_BYTES = 32
IV_BYTES = 16
_BLOCK_BYTES = 16
_V3_PREFIX = "v3:"
_FINGERPRINT_HEX_CHARS = 16
# Strict: bytes.fromhex() would also accept whitespace, which no encoder ever produces.
_HEX = re.compile(r"[0-9a-fA-F]*")


class EncryptionError(Exception):
    """Base class of every error raised by this module."""


class InvalidKeyError(EncryptionError):
    """The key or IV material is unusable.

    ``variable`` names the setting (``CREDS_KEY`` or ``CREDS_IV``); the value is never included.
    """

    def __init__(self, *, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable} {reason}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variable={self.variable!r}, reason={self.reason!r})"


class DecryptionError(EncryptionError):
    """A value could not be decrypted: malformed, corrupt, or encrypted under another key.

    ``reason`` is a short fixed description and ``version`` the detected format
    (``"v1"``, ``"v2"``, ``"v3"``, or ``None`` when no format applies). The message never
    contains the ciphertext or any decrypted bytes.
    """

    def __init__(self, *, reason: str, version: str | None = None) -> None:
        self.reason = reason
        self.version = version
        where = f" {version}" if version else ""
        super().__init__(f"cannot decrypt{where} value: {reason}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, version={self.version!r})"


def _parse_key_material(value: str, *, variable: str, size: int) -> bytes:
    if len(value) != size * 2 or not _HEX.fullmatch(value):
        raise InvalidKeyError(
            variable=variable,
            reason=f"must be {size * 2} hexadecimal characters ({size} bytes)",
        )
    return bytes.fromhex(value)


def _parse_hex(value: str, *, part: str, version: str) -> bytes:
    if len(value) % 2 or not _HEX.fullmatch(value):
        raise DecryptionError(reason=f"{part} is not valid hexadecimal", version=version)
    return bytes.fromhex(value)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # `from None`: the UnicodeEncodeError holds the whole plaintext in `.object`.
        raise EncryptionError("plaintext is not valid Unicode (lone surrogate)") from None


class EncryptionService:
    """Encrypts and decrypts values the way LibreChat does, under one ``CREDS_KEY``/``CREDS_IV``.

    Instances are immutable and thread-safe; each call builds its own cipher context. The key
    material is passed in (the service builds it from its settings); design 004's
    ``load_keys_from_env()`` is deliberately absent: only ``registry/config.py`` reads the
    environment.
    """

    __slots__ = ("_iv", "_key")

    def __init__(self, *, key_hex: str, iv_hex: str) -> None:
        """Validate and hold the key material.

        Raises:
            InvalidKeyError: ``key_hex`` is not 64 hex characters (``CREDS_KEY``) or ``iv_hex``
                is not 32 hex characters (``CREDS_IV``).
        """
        self._key = _parse_key_material(key_hex, variable="CREDS_KEY", size=KEY_BYTES)
        self._iv = _parse_key_material(iv_hex, variable="CREDS_IV", size=IV_BYTES)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_fingerprint={self.key_fingerprint()!r})"

    # --- writing -------------------------------------------------------------------------

    def encrypt(self, plaintext: str) -> str:
        """Encrypt in LibreChat's ``encryptV2`` format (``hex(iv):hex(ct)``) with a random IV.

        Raises:
            EncryptionError: ``plaintext`` contains a lone surrogate (not encodable as UTF-8).
        """
        return self._encrypt_v2_with_iv(plaintext, iv=os.urandom(IV_BYTES))

    def encrypt_v1(self, plaintext: str) -> str:
        """Encrypt in LibreChat's legacy ``encrypt`` format (fixed ``CREDS_IV``, bare hex).

        Deterministic, so equal plaintexts give equal ciphertexts: for interop tests only.

        Raises:
            EncryptionError: ``plaintext`` contains a lone surrogate.
        """
        return self._cbc_encrypt(_utf8(plaintext), iv=self._iv).hex()

    def encrypt_v3(self, plaintext: str) -> str:
        """Encrypt in LibreChat's ``encryptV3`` format (``v3:hex(iv):hex(ct)``, AES-256-CTR).

        Raises:
            EncryptionError: ``plaintext`` contains a lone surrogate.
        """
        return self._encrypt_v3_with_iv(plaintext, iv=os.urandom(IV_BYTES))

    def _encrypt_v2_with_iv(self, plaintext: str, *, iv: bytes) -> str:
        return f"{iv.hex()}:{self._cbc_encrypt(_utf8(plaintext), iv=iv).hex()}"

    def _encrypt_v3_with_iv(self, plaintext: str, *, iv: bytes) -> str:
        encryptor = Cipher(algorithms.AES(self._key), modes.CTR(iv)).encryptor()
        ciphertext = encryptor.update(_utf8(plaintext)) + encryptor.finalize()
        return f"{_V3_PREFIX}{iv.hex()}:{ciphertext.hex()}"

    def _cbc_encrypt(self, data: bytes, *, iv: bytes) -> bytes:
        padder = padding.PKCS7(_BLOCK_BYTES * 8).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    # --- reading -------------------------------------------------------------------------

    def decrypt(self, value: str) -> str:
        """Decrypt a v1, v2 or v3 value, dispatching as LibreChat does.

        A value starting with ``v3:`` is v3, one containing ``:`` is v2 (``iv:ct``), anything
        else is v1 (hex under the fixed ``CREDS_IV``).

        v1/v2 are checked for valid PKCS7 padding and strict UTF-8, so a wrong key almost
        always raises. v3 (CTR) carries no integrity check: under a wrong key it may return
        garbage text instead of raising.

        Raises:
            DecryptionError: the value is empty, not well-formed hex, has the wrong length,
                bad padding or does not decode as UTF-8.
        """
        if not value:
            raise DecryptionError(reason="value is empty")
        if value.startswith(_V3_PREFIX):
            return self._decrypt_v3(value)
        if ":" in value:
            return self._decrypt_v2(value)
        ciphertext = _parse_hex(value, part="ciphertext", version="v1")
        return self._cbc_decrypt(ciphertext, iv=self._iv, version="v1")

    def is_encrypted(self, value: str) -> bool:
        """True if ``value`` decrypts cleanly under this key; never raises.

        Key rotation uses this to skip values that were already rotated. For v3 values the
        answer is only "well-formed and decodes as UTF-8" (see ``decrypt``).
        """
        try:
            self.decrypt(value)
        except DecryptionError:
            return False
        return True

    def _decrypt_v2(self, value: str) -> str:
        iv_hex, _, ct_hex = value.partition(":")
        iv = self._parse_iv(iv_hex, version="v2")
        ciphertext = _parse_hex(ct_hex, part="ciphertext", version="v2")
        return self._cbc_decrypt(ciphertext, iv=iv, version="v2")

    def _decrypt_v3(self, value: str) -> str:
        parts = value[len(_V3_PREFIX) :].split(":")
        if len(parts) != 2:
            raise DecryptionError(reason="expected v3:<iv>:<ciphertext>", version="v3")
        iv = self._parse_iv(parts[0], version="v3")
        ciphertext = _parse_hex(parts[1], part="ciphertext", version="v3")
        decryptor = Cipher(algorithms.AES(self._key), modes.CTR(iv)).decryptor()
        return _decode(decryptor.update(ciphertext) + decryptor.finalize(), version="v3")

    @staticmethod
    def _parse_iv(iv_hex: str, *, version: str) -> bytes:
        iv = _parse_hex(iv_hex, part="iv", version=version)
        if len(iv) != IV_BYTES:
            raise DecryptionError(reason=f"iv must be {IV_BYTES} bytes", version=version)
        return iv

    def _cbc_decrypt(self, ciphertext: bytes, *, iv: bytes, version: str) -> str:
        if not ciphertext or len(ciphertext) % _BLOCK_BYTES:
            raise DecryptionError(
                reason=f"ciphertext must be a non-empty multiple of {_BLOCK_BYTES} bytes",
                version=version,
            )
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(_BLOCK_BYTES * 8).unpadder()
        try:
            data = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionError(
                reason="invalid padding (wrong key or corrupt value)", version=version
            ) from None
        return _decode(data, version=version)

    # --- design 004's names -----------------------------------------------------------------

    def encrypt_value(self, plaintext: str) -> str:
        """``encrypt`` under the name design 004 draws (``EncryptionService.encrypt_value``).

        Raises:
            EncryptionError: ``plaintext`` contains a lone surrogate.
        """
        return self.encrypt(plaintext)

    def decrypt_value(self, value: str) -> str:
        """``decrypt`` under the name design 004 draws (``EncryptionService.decrypt_value``).

        Raises:
            DecryptionError: see ``decrypt``.
        """
        return self.decrypt(value)

    # --- misc ----------------------------------------------------------------------------

    def key_fingerprint(self) -> str:
        """A short SHA-256 prefix of the key (16 hex chars): identifies the key, safe to log."""
        return hashlib.sha256(self._key).hexdigest()[:_FINGERPRINT_HEX_CHARS]

    @staticmethod
    def hash_token(value: str) -> str:
        """LibreChat's ``hashToken``: the SHA-256 hex digest of the UTF-8 text.

        Raises:
            EncryptionError: ``value`` contains a lone surrogate.
        """
        return hashlib.sha256(_utf8(value)).hexdigest()


def _decode(data: bytes, *, version: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # `from None`: the UnicodeDecodeError holds the decrypted bytes in `.object`.
        raise DecryptionError(
            reason="decrypted bytes are not UTF-8 (wrong key or corrupt value)", version=version
        ) from None


_default_service: EncryptionService | None = None


def configure_encryption(*, key_hex: str, iv_hex: str) -> EncryptionService:
    """Build an ``EncryptionService`` and make it the process-wide default.

    Raises:
        InvalidKeyError: the key or IV material is invalid (the previous default is kept).
    """
    global _default_service
    service = EncryptionService(key_hex=key_hex, iv_hex=iv_hex)
    _default_service = service
    return service


def get_encryption() -> EncryptionService:
    """The process-wide default service.

    Raises:
        EncryptionError: ``configure_encryption`` has not been called.
    """
    if _default_service is None:
        raise EncryptionError("encryption is not configured")
    return _default_service


def encrypt_value(plaintext: str) -> str:
    """Encrypt with the default service in the ``encryptV2`` format.

    Raises:
        EncryptionError: encryption is not configured, or ``plaintext`` is not encodable.
    """
    return get_encryption().encrypt(plaintext)


def decrypt_value(value: str) -> str:
    """Decrypt a v1/v2/v3 value with the default service.

    Raises:
        EncryptionError: encryption is not configured.
        DecryptionError: the value cannot be decrypted.
    """
    return get_encryption().decrypt(value)


def generate_key_material() -> tuple[str, str]:
    """Fresh random ``(CREDS_KEY, CREDS_IV)`` hex strings (64 and 32 chars), for dev mode."""
    return os.urandom(KEY_BYTES).hex(), os.urandom(IV_BYTES).hex()
