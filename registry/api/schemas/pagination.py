"""The pagination block of every list response."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from registry.services.pagination import PageWindow

# The query parameters of every paginated list (the servers list bounds ``page`` lower).
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=100)]


class Pagination(BaseModel):
    total: int
    page: int
    per_page: int
    total_pages: int

    @classmethod
    def of(cls, window: PageWindow) -> Pagination:
        return cls(
            total=window.total,
            page=window.page,
            per_page=window.per_page,
            total_pages=window.total_pages,
        )
