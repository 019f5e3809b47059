"""Parsing of MongoDB ObjectIds as the external app spells them (24 hex characters)."""

from __future__ import annotations

import re

from bson import ObjectId

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


def as_object_id(value: str) -> ObjectId | None:
    """The ObjectId spelled by ``value``, or None for any other string."""
    return ObjectId(value) if _OBJECT_ID.match(value) else None
