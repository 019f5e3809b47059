"""UTC instants as the API reads and writes them: one normalisation, one text format."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already.

    Raises ValueError when UTC cannot represent the instant (``0001-01-01T00:00+05:00`` or
    ``9999-12-31T23:00-05:00`` fall outside datetime's range once converted), so a request
    schema that uses this answers 422 instead of failing later.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range once converted to UTC") from None


def utc_iso(value: datetime) -> str:
    """``2026-11-22T08:26:56.123Z``: millisecond precision, as a BSON date stores it."""
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
