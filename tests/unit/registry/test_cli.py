"""Command-line parsing that must fail as a usage error, never as a traceback."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from registry.cli import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("8h", timedelta(hours=8))],
)
def test_parse_duration_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0h", "must be longer than zero"),
        ("0s", "must be longer than zero"),
        ("999999999999d", "is too long"),
        ("8 hours", "invalid duration"),
        ("-1h", "invalid duration"),
    ],
)
def test_parse_duration_rejects_as_usage_error(text: str, reason: str) -> None:
    """``token create --expires-in 0h`` ended in a traceback instead of a usage error."""
    with pytest.raises(argparse.ArgumentTypeError) as rejected:
        parse_duration(text)
    assert reason in str(rejected.value)
