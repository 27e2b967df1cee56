"""Illumina Clarity LIMS (GenoLogics) REST API client: the paged project list and each
project's detail, as XML.

- HTTP basic auth (``CLARITY_USERNAME`` / ``CLARITY_PASSWORD``), ``Accept: application/xml``,
  base URL ``https://host/api/v2``.
- ``GET /projects`` answers a page of project links; its ``next-page`` link is followed
  until absent (``sources.paging``). The link's *query* is replayed against our own base
  URL: a server behind a proxy writes its internal host into links, and the credentials
  must never travel to a host the user did not name.
- ``GET /projects/{limsid}`` answers one project.
- ``<exc:exception>`` answers (with any status) become typed errors carrying the
  exception's code and category (never its free-text message); every body is parsed by the hardened ``pwh.sources.xml.parse_xml``.

The parsers here turn XML into plain dicts with the text exactly as sent: typing and
checking the values is the transform's job (``transforms.clarity``).
"""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from xml.sax.saxutils import escape

from pwh.sources.errors import ApiError, NotFoundError, TransientError, safe_token
from pwh.sources.http import Answer, HttpClient, HttpSettings, SourceClient, StaticHeaders
from pwh.sources.paging import collect_pages
from pwh.sources.xml import Element, local_name, namespace, parse_xml

USERNAME_VARIABLE = "CLARITY_USERNAME"
PASSWORD_VARIABLE = "CLARITY_PASSWORD"

PRJ = "http://genologics.com/ri/project"
UDF = "http://genologics.com/ri/userdefined"
RI = "http://genologics.com/ri"
FILE = "http://genologics.com/ri/file"
EXC = "http://genologics.com/ri/exception"
RES = "http://genologics.com/ri/researcher"
LAB = "http://genologics.com/ri/lab"
FILES_A_REQUEST = 500  # links a batch retrieve names (the page size real servers use for lists)

# A page request: the list's query parameters, in order, duplicates kept (hashable, so the
# page walker can tell a loop).
PageRequest = tuple[tuple[str, str], ...]

_XML_TYPES = ("xml",)  # application/xml, text/xml, application/…+xml
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9.+-]{1,40}/[A-Za-z0-9.+-]{1,60}")


class ClarityApiError(ApiError):
    """An ``<exc:exception>`` answer (or another permanent error) from Clarity."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 category: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.category = category


class ClarityNotFoundError(NotFoundError):
    """404: the project does not exist (any more) or is not visible to this user."""


@dataclass(frozen=True)
class ProjectPage:
    links: list[dict[str, str | None]]  # {limsid, uri, name}
    next_request: PageRequest | None
    server_time: datetime | None  # the answer's Date header (the server's clock)


@dataclass(frozen=True)
class ProjectListing:
    links: list[dict[str, str | None]]
    pages: int
    server_time: datetime | None  # Date of the FIRST page: the listing's "as of" time


# --------------------------------------------------------------------------- filters
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def filter_params(
    names: Sequence[str] = (), open_date: str | None = None, udf: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The list's query parameters for the user's filters.

    ``names``: ``name=…`` (repeatable); ``open_date``: YYYY-MM-DD (projects opened since);
    ``udf``: ``udf.NAME[.OPERATOR]=VALUE``, ``udt.name=UDTNAME`` or
    ``udt.UDTNAME.UDFNAME[.OPERATOR]=VALUE`` strings, passed through as written.
    """
    params = [("name", n) for n in names]
    if open_date is not None:
        try:
            if not _DATE.match(open_date):
                raise ValueError
            date.fromisoformat(open_date)
        except ValueError:
            raise ValueError(f"open-date must be a date YYYY-MM-DD, got {open_date!r}") from None
        params.append(("open-date", open_date))
    for item in udf:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(("udf.", "udt.")) or len(key) < 5:
            raise ValueError(f"UDF filter must look like 'udf.NAME=VALUE' or 'udt.name=UDTNAME', got {item!r}")
        params.append((key, value))
    return params


def checked_open_date(open_date: str | None) -> str | None:
    """``open_date`` as the option gave it, once it is a date (ValueError otherwise)."""
    filter_params((), open_date, ())
    return open_date


def checked_udf_filters(udf: list[str] | None) -> list[str] | None:
    """``udf`` filters as the option gave them, once each is well formed (ValueError otherwise)."""
    filter_params((), None, udf or ())
    return udf


def checked_since(since: str | None) -> str | None:
    """A watermark override as given, once it reads as a time stamp with a zone."""
    if since:
        parse_timestamp(since)
    return since


def format_timestamp(when: datetime) -> str:
    """``last-modified`` format (ISO 8601 with zone, seconds): ``2026-11-22T18:30:05Z``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp` (any ISO 8601 form with a zone)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time stamp with a zone (e.g. 2026-11-01T00:00:00Z), got {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"time stamp without a zone: {text!r}")
    return value.astimezone(timezone.utc)


# --------------------------------------------------------------------------- answers
def _is(element: Element, name: str, *namespaces: str | None) -> bool:
    return local_name(element.tag) == name and namespace(element.tag) in namespaces


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None or element.text == "":
        return None
    return element.text


def exception_error(root: Element, status: int) -> Exception:
    """The typed error for an ``<exc:exception category code>`` document: its code and
    category (when they are machine tokens), never its ``<message>`` (free text a server
    may fill with anything, patient data included)."""
    code, category = safe_token(root.get("code")), safe_token(root.get("category"))
    label = f"HTTP {status} Clarity exception" + (f" {code}" if code else "") + (f" ({category})" if category else "")
    if status == 404 or code == "404":
        return ClarityNotFoundError(label)
    return ClarityApiError(label, status=status, code=code, category=category)


def read_answer(answer: Answer) -> Element:
    """The root element of a Clarity answer, or the typed error it stands for.

    HttpClient has already retried 401/429/5xx; what reaches here is a final answer."""
    if answer.status >= 400:
        try:
            root = parse_xml(answer.body)
        except Exception:  # noqa: BLE001 - a non-XML error page: the status says enough
            root = None
        if root is not None and _is(root, "exception", EXC, None):
            raise exception_error(root, answer.status)
        if answer.status == 404:
            raise ClarityNotFoundError(f"HTTP 404 ({len(answer.body)} bytes, no exception document)")
        raise ClarityApiError(f"HTTP {answer.status} without an exception document", status=answer.status)
    content_type = answer.headers.get("Content-Type", "")
    if content_type and not any(t in content_type.lower() for t in _XML_TYPES):
        # A proxy's HTML page with 200: the real answer never came. Retry.
        media_type = content_type.split(";")[0].strip()
        shown = media_type if _MEDIA_TYPE.fullmatch(media_type) else "of another type"
        raise TransientError(f"HTTP {answer.status} answer is {shown}, not XML")
    root = parse_xml(answer.body)  # MalformedXmlError is transient, UnsafeXmlError permanent
    if _is(root, "exception", EXC, None):
        raise exception_error(root, answer.status)
    return root


def _server_time(answer: Answer) -> datetime | None:
    value = answer.headers.get("Date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class LinkList:
    """A paged list resource: its path, its root and link elements (namespace) and the
    child elements of a link kept as text (element → key)."""

    path: str
    prefix: str  # the namespace's usual prefix, for messages
    root: str
    link: str
    ns: str
    texts: tuple[tuple[str, str], ...]


PROJECT_LIST = LinkList("projects", "prj", "projects", "project", PRJ, (("name", "name"),))
RESEARCHER_LIST = LinkList("researchers", "res", "researchers", "researcher", RES,
                           (("first-name", "first_name"), ("last-name", "last_name")))
LAB_LIST = LinkList("labs", "lab", "labs", "lab", LAB, (("name", "name"),))


def parse_link_page(root: Element, kind: LinkList) -> tuple[list[dict[str, str | None]], PageRequest | None]:
    """A page of a list (``<prj:projects>``, ``<res:researchers>``, ``<lab:labs>``): its
    links (``limsid``, ``uri`` and the kind's texts) and the next page's query (None on
    the last page)."""
    if not _is(root, kind.root, kind.ns):
        raise ClarityApiError(f"expected <{kind.prefix}:{kind.root}>, got <{safe_token(local_name(root.tag)) or '?'}>")
    links: list[dict[str, str | None]] = []
    next_request: PageRequest | None = None
    for child in root:
        if _is(child, kind.link, None, kind.ns):
            link = {"limsid": child.get("limsid"), "uri": child.get("uri")}
            for tag, key in kind.texts:
                link[key] = _text(next((c for c in child if _is(c, tag, None, kind.ns)), None))
            links.append(link)
        elif _is(child, "next-page", None, kind.ns):
            next_request = next_page_request(child.get("uri"), kind.path)
    return links, next_request


def parse_project_page(root: Element) -> tuple[list[dict[str, str | None]], PageRequest | None]:
    """``<prj:projects>``: the project links and the next page's query (None on the last page)."""
    return parse_link_page(root, PROJECT_LIST)


def next_page_request(uri: str | None, path: str = "projects") -> PageRequest:
    """The query of a ``next-page`` link, replayed against our own base URL."""
    if not uri:
        raise ClarityApiError("next-page link without a uri")
    parts = urlsplit(uri)
    if not parts.path.rstrip("/").endswith("/" + path):
        raise ClarityApiError(f"next-page link does not point at the {path} list")
    return tuple(parse_qsl(parts.query, keep_blank_values=True))


def parse_file_details(root: Element) -> list[dict[str, str | None]]:
    """``<file:details>`` (a batch retrieve's answer) → each file's ``limsid``, ``uri``,
    ``attached_to``, ``content_location``, ``original_name`` and ``is_published`` as sent.
    ``original-location`` (a path on the uploader's computer, often with their user name)
    is not read."""
    if not _is(root, "details", FILE):
        raise ClarityApiError(f"expected <file:details>, got <{safe_token(local_name(root.tag)) or '?'}>")
    files = []
    for child in root:
        if not _is(child, "file", FILE, None):
            continue
        found: dict[str, str | None] = {"limsid": child.get("limsid"), "uri": child.get("uri"), "attached_to": None,
                                        "content_location": None, "original_name": None, "is_published": None}
        for element in child:
            tag = local_name(element.tag).replace("-", "_")
            if tag in found and tag not in ("limsid", "uri") and namespace(element.tag) in (None, FILE):
                found[tag] = _text(element)
        files.append(found)
    return files


def file_links_body(uris: Sequence[str]) -> bytes:
    """The body of ``POST files/batch/retrieve``: ``<ri:links>`` naming the files."""
    links = "".join(f'<link uri="{escape(uri, {chr(34): "&quot;"})}" rel="files"/>' for uri in uris)
    return f'<ri:links xmlns:ri="{RI}">{links}</ri:links>'.encode()


def parse_researcher(root: Element) -> dict[str, str | None]:
    """``<res:researcher>`` → its names and its lab's uri, as sent. Only these: a
    researcher's e-mail, phone, fax, credentials and UDFs are never read."""
    if not _is(root, "researcher", RES):
        raise ClarityApiError(f"expected <res:researcher>, got <{safe_token(local_name(root.tag)) or '?'}>")
    researcher: dict[str, str | None] = {"uri": root.get("uri"), "first_name": None, "last_name": None,
                                         "initials": None, "lab_uri": None}
    for child in root:
        if namespace(child.tag) not in (None, RES):
            continue
        tag = local_name(child.tag)
        if tag in ("first-name", "last-name", "initials"):
            researcher[tag.replace("-", "_")] = _text(child)
        elif tag == "lab":
            researcher["lab_uri"] = child.get("uri")
    return researcher


def _udf_field(element: Element) -> dict[str, str | None]:
    return {
        "name": element.get("name"),
        "type": element.get("type"),
        "unit": element.get("unit"),
        "value": _text(element),
    }


_SINGLE_TEXT = {"name": "name", "open-date": "open_date", "close-date": "close_date",
                "invoice-date": "invoice_date", "priority": "priority"}


def parse_project(root: Element) -> dict[str, Any]:
    """``<prj:project>`` → a dict with every value as the text the server sent.

    Children are matched by local name, qualified as the schema says or unqualified (the
    UDT's fields are unqualified ``<field>`` per the XSD but ``<udf:field>`` in Illumina's
    own example). Anything else is kept in ``extra``: nothing is dropped silently."""
    if not _is(root, "project", PRJ):
        raise ClarityApiError(f"expected <prj:project>, got <{safe_token(local_name(root.tag)) or '?'}>")
    project: dict[str, Any] = {
        "limsid": root.get("limsid"), "uri": root.get("uri"),
        "name": None, "open_date": None, "close_date": None, "invoice_date": None, "priority": None,
        "researcher_uri": None, "udt": None, "udfs": [], "external_ids": [], "files": [], "extra": [],
    }
    seen: set[str] = set()
    for child in root:
        tag = local_name(child.tag)
        ns = namespace(child.tag)
        if tag in _SINGLE_TEXT and ns in (None, PRJ) and tag not in seen:
            seen.add(tag)
            project[_SINGLE_TEXT[tag]] = _text(child)
        elif tag == "researcher" and ns in (None, PRJ) and tag not in seen:
            seen.add(tag)
            project["researcher_uri"] = child.get("uri")
        elif tag == "type" and ns in (UDF, None) and project["udt"] is None:
            project["udt"] = {
                "name": child.get("name"),
                "fields": [_udf_field(f) for f in child if _is(f, "field", None, UDF)],
            }
        elif tag == "field" and ns in (UDF, None):
            project["udfs"].append(_udf_field(child))
        elif tag == "externalid" and ns in (RI, None):
            project["external_ids"].append({"id": child.get("id"), "uri": child.get("uri")})
        elif tag == "file" and ns in (FILE, None):
            project["files"].append({"limsid": child.get("limsid"), "uri": child.get("uri")})
        else:
            project["extra"].append({"tag": child.tag, "attributes": dict(child.attrib), "text": _text(child)})
    return project


def link_key(link: dict[str, str | None]) -> str | None:
    """What tells project links apart while paging: the limsid, else the uri."""
    return link.get("limsid") or link.get("uri")


# --------------------------------------------------------------------------- client
class ClarityClient(SourceClient):
    """Fetches Clarity projects over one shared :class:`HttpClient`."""

    def __init__(self, http: HttpClient, *, max_pages: int = 100_000) -> None:
        self.http = http
        self.max_pages = max_pages

    @classmethod
    def connect(cls, base_url: str, *, username: str, password: str,
                settings: HttpSettings | None = None) -> ClarityClient:
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        credentials = StaticHeaders(
            {"Authorization": f"Basic {token}"}, setting_name=f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
        )
        http = HttpClient(base_url, source="clarity", credentials=credentials,
                          default_headers={"Accept": "application/xml"}, settings=settings)
        return cls(http)

    async def _list(self, kind: LinkList, params: Sequence[tuple[str, str]] = ()) -> ProjectListing:
        """Every link of a (filtered) list, following ``next-page`` to the end."""
        pages: list[ProjectPage] = []

        async def page(request: PageRequest) -> ProjectPage:
            def decode(answer: Answer) -> ProjectPage:
                links, next_request = parse_link_page(read_answer(answer), kind)
                return ProjectPage(links, next_request, _server_time(answer))

            return await self.http.request("GET", kind.path, decode, params=list(request))

        def links(page: ProjectPage) -> list[dict[str, str | None]]:
            pages.append(page)
            return page.links

        found = await collect_pages(
            page, tuple(params), lambda page, _: page.next_request, links, link_key, max_pages=self.max_pages
        )
        return ProjectListing(found, len(pages), pages[0].server_time if pages else None)

    async def list_projects(self, params: Sequence[tuple[str, str]] = ()) -> ProjectListing:
        """Every project link of the (filtered) list, following ``next-page`` to the end."""
        return await self._list(PROJECT_LIST, params)

    async def list_researchers(self) -> list[dict[str, str | None]]:
        """Every researcher link (``uri``, ``first_name``, ``last_name``)."""
        return (await self._list(RESEARCHER_LIST)).links

    async def list_labs(self) -> list[dict[str, str | None]]:
        """Every lab link (``uri``, ``name``)."""
        return (await self._list(LAB_LIST)).links

    async def fetch_file_details(self, uris: Sequence[str]) -> list[dict[str, str | None]]:
        """The details of the files at ``uris`` (``POST files/batch/retrieve``, a read:
        safe to retry), ``FILES_A_REQUEST`` a request."""
        found: list[dict[str, str | None]] = []
        for start in range(0, len(uris), FILES_A_REQUEST):
            body = file_links_body(uris[start:start + FILES_A_REQUEST])
            found.extend(await self.http.request(
                "POST", "files/batch/retrieve", lambda answer: parse_file_details(read_answer(answer)),
                data=body, headers={"Content-Type": "application/xml"},
            ))
        return found

    async def fetch_researcher(self, researcher_id: str) -> dict[str, str | None]:
        """One researcher's names and lab (``parse_researcher``)."""
        path = f"researchers/{quote(researcher_id, safe='')}"
        return await self.http.request("GET", path, lambda answer: parse_researcher(read_answer(answer)))

    async def fetch_project(self, limsid: str) -> dict[str, Any]:
        """One project's detail, parsed (text as sent)."""
        path = f"projects/{quote(limsid, safe='')}"
        return await self.http.request("GET", path, lambda answer: parse_project(read_answer(answer)))
