"""Following a paged collection, whatever says where the next page is.

A source supplies how to fetch one page from a request (an href, an offset, a page
token: anything hashable), how to read the next request off a page (HAL
``_links.nextByOffset``, an XML ``next-page`` link, offset + limit < total; None ends the
walk), the elements of a page and each element's key.

A server that does not page honestly is an API error, never an endless loop nor a
listing cut short: a walk fails when the server sends it back to a page it already
served, when a page that is not the last adds no element not seen before (the same page
for every offset, an empty page before the end, a window of elements already served
under other offsets), when an empty page ends it short of the total the server stated
(``stated_total``, where the source has one), or past ``max_pages`` pages or
``max_elements`` distinct elements.
Failing, not ending: a repeated page proves the server ignores paging, so whatever was
collected may be a fraction of the collection, and a short project list would be taken
for deleted projects. An element seen again (an overlapping window, an offset shifted by
an insertion) is dropped, so what is held stays bounded by the distinct elements.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pwh.sources.errors import ApiError

R = TypeVar("R", bound=Hashable)  # what fetches a page: an href, an offset, …
P = TypeVar("P")  # a decoded page
T = TypeVar("T")  # an element of a page

_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]{1,200}")
DEFAULT_MAX_PAGES = 100_000
# Distinct elements a walk may hold: 25x the largest account measured (20,000 projects).
DEFAULT_MAX_ELEMENTS = 500_000


async def follow_pages(
    fetch: Callable[[R], Awaitable[P]],
    first: R,
    next_request: Callable[[P, R], R | None],
    elements: Callable[[P], list[T]],
    key: Callable[[T], Hashable | None],
    *,
    stated_total: Callable[[P], int | None] | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> AsyncIterator[tuple[P, list[T]]]:
    """Yield every page with its elements not seen before, from ``first`` until
    ``next_request(page, request)`` is None. An element whose key is None is always
    yielded but never counts as new (it cannot show that the walk moves on)."""
    request: R | None = first
    requested: set[R] = set()
    seen: set[Hashable] = set()
    while request is not None:
        if request in requested:
            raise ApiError(f"paging loops: page {_show(request)} was already served")
        if len(requested) >= max_pages:
            raise ApiError(f"paging exceeds {max_pages:,} pages")
        requested.add(request)
        page = await fetch(request)
        fresh: list[T] = []
        added = 0
        for element in elements(page):
            element_key = key(element)
            if element_key is None:
                fresh.append(element)
            elif element_key not in seen:
                seen.add(element_key)
                fresh.append(element)
                added += 1
        if len(seen) > max_elements:
            raise ApiError(f"paging exceeds {max_elements:,} elements")
        following = next_request(page, request)
        if following is not None and not added:
            raise ApiError(f"paging broken: page {_show(request)} adds no element not already served, "
                           "yet the server names a next page")
        total = stated_total(page) if stated_total is not None and not fresh else None
        if total is not None and total > len(seen):
            raise ApiError(f"paging broken: page {_show(request)} is empty after {len(seen):,} of the "
                           f"{total:,} elements the server states")
        yield page, fresh
        request = following


async def collect_pages(
    fetch: Callable[[R], Awaitable[P]],
    first: R,
    next_request: Callable[[P, R], R | None],
    elements: Callable[[P], list[T]],
    key: Callable[[T], Hashable | None],
    *,
    stated_total: Callable[[P], int | None] | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> list[T]:
    """Every distinct element of every page, in order (see :func:`follow_pages`)."""
    out: list[T] = []
    async for _, fresh in follow_pages(fetch, first, next_request, elements, key, stated_total=stated_total,
                                       max_pages=max_pages, max_elements=max_elements):
        out.extend(fresh)
    return out


def _show(request: Any) -> str:
    """A page request as an error may show it: an offset as it is; a server-given link by
    its path only, and only when the path is plain (a query may carry a credential, and a
    server's text is not ours to keep)."""
    if isinstance(request, int) and not isinstance(request, bool):
        return str(request)
    path = urlsplit(str(request)).path
    return path if _PLAIN_PATH.fullmatch(path) else "(a link the server gave)"
