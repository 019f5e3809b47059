"""Database layer shared with the external app: connection, embedded server, encryption."""

from packages.database.encryption import (
    DecryptionError,
    EncryptionError,
    EncryptionService,
    InvalidKeyError,
    configure_encryption,
    decrypt_value,
    encrypt_value,
    generate_key_material,
    get_encryption,
)

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
