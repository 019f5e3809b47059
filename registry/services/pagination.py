"""The page window every paginated service result shares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PageWindow:
    """Which slice of a result a page is: subclasses add the items under their own name."""

    total: int
    page: int
    per_page: int

    @property
    def total_pages(self) -> int:
        return -(-self.total // self.per_page)

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.per_page
