"""Following a paged collection, whatever says where the next page is.

A source supplies how to fetch one page from a request (an href, an offset, a page
token: anything hashable) and how to read the next request off a page (HAL
``_links.nextByOffset``, an XML ``next-page`` link, offset + limit < total); None ends
the walk. A server that sends the walk back to a page it already served, or past
``max_pages``, is an API error, never an endless loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import TypeVar

from sources.errors import ApiError

R = TypeVar("R", bound=Hashable)  # what fetches a page: an href, an offset, …
P = TypeVar("P")  # a decoded page
T = TypeVar("T")  # an element of a page

DEFAULT_MAX_PAGES = 100_000


async def follow_pages(
    fetch: Callable[[R], Awaitable[P]],
    first: R,
    next_request: Callable[[P, R], R | None],
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> AsyncIterator[P]:
    """Yield every page, from ``first`` until ``next_request(page, request)`` is None."""
    request: R | None = first
    seen: set[R] = set()
    while request is not None:
        if request in seen:
            raise ApiError(f"paging loops: page {request!r} was already served")
        if len(seen) >= max_pages:
            raise ApiError(f"paging exceeds {max_pages:,} pages")
        seen.add(request)
        page = await fetch(request)
        yield page
        request = next_request(page, request)


async def collect_pages(
    fetch: Callable[[R], Awaitable[P]],
    first: R,
    next_request: Callable[[P, R], R | None],
    elements: Callable[[P], list[T]],
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> list[T]:
    """Every element of every page, in order."""
    out: list[T] = []
    async for page in follow_pages(fetch, first, next_request, max_pages=max_pages):
        out.extend(elements(page))
    return out
