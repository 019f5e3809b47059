"""The pagination block of every list response."""

from __future__ import annotations

from pydantic import BaseModel

from registry.services.pagination import PageWindow


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
