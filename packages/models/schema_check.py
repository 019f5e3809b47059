"""Startup guard: the generated models must match the configured schema version."""

from packages.models import SCHEMA_VERSION


class SchemaVersionMismatchError(RuntimeError):
    """The generated models were built from a different jarvis-api schema release."""

    def __init__(self, *, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Generated models are {actual} but SCHEMA_VERSION is {expected}. "
            f"Run: python scripts/generate_schemas.py --version {expected}"
        )


def check_schema_version(expected: str) -> None:
    """Raise unless the generated models were built from schema release ``expected``.

    Raises:
        SchemaVersionMismatchError: ``expected`` (the service's ``SCHEMA_VERSION`` setting)
            differs from the version the code in ``packages/models/_generated`` was built from.
    """
    if expected != SCHEMA_VERSION:
        raise SchemaVersionMismatchError(expected=expected, actual=SCHEMA_VERSION)
