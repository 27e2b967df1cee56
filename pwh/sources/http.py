"""The HTTP machinery every source shares: one aiohttp session, a bound on requests in
flight, per-request timeouts, a cap on answer size, retries with exponential backoff and
jitter (honouring Retry-After), and counters for the run ledger.

Sources differ only in how they read an answer (JSON envelope, HAL errors, XML), which
they pass in as a ``decode`` callable; transport failures and status codes are handled
here once.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import os
import re
import ssl
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)
from yarl import URL

from pwh.settings import MAX_RESPONSE_BYTES
from pwh.sources.errors import (
    ApiError,
    AuthError,
    NotFoundError,
    RedirectRefusedError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    SourceError,
    TransientError,
    UnresolvedHostError,
)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Same-origin redirects followed per request (aiohttp's own default is 10).
MAX_REDIRECTS = 10

MAX_RESPONSE_VARIABLE = MAX_RESPONSE_BYTES.name
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def max_response_bytes_from_env() -> int:
    """The answer-size cap: ``PWH_MAX_RESPONSE_BYTES`` when set (bytes), else 64 MiB."""
    configured = MAX_RESPONSE_BYTES.read()
    return DEFAULT_MAX_RESPONSE_BYTES if configured is None else configured


@dataclass(frozen=True)
class HttpSettings:
    """Transport limits; every field can be set per source from the CLI or environment."""

    concurrency: int = 32
    timeout_s: float = 30.0
    max_attempts: int = 6
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 120.0
    # An answer beyond this is refused (ResponseTooLargeError), never retried.
    max_response_bytes: int = field(default_factory=max_response_bytes_from_env)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be at least 1")

    @classmethod
    def for_run(
        cls, concurrency: int, timeout_s: float, max_attempts: int, max_response_bytes: int | None
    ) -> HttpSettings:
        """Settings from a flow's parameters; no cap given → PWH_MAX_RESPONSE_BYTES, else 64 MiB."""
        cap = {} if max_response_bytes is None else {"max_response_bytes": max_response_bytes}
        return cls(concurrency=concurrency, timeout_s=timeout_s, max_attempts=max_attempts, **cap)


@dataclass
class RequestStats:
    """What a run reports in its ledger."""

    requests: int = 0
    retries: int = 0
    bytes_received: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Credentials(Protocol):
    """How a source authenticates. ``refresh`` renews credentials after a 401 and says
    whether the request is worth one more try (OAuth); static credentials answer False.
    ``rejected`` are the credential headers the refused request carried: a burst of 401s
    for one expired token then renews it once (the later ones find a newer token)."""

    setting_name: str

    async def headers(self) -> Mapping[str, str]: ...

    async def refresh(self, session: aiohttp.ClientSession, rejected: Mapping[str, str]) -> bool: ...


@dataclass
class StaticHeaders:
    """Credentials that never change (an API token read from the environment).
    ``secrets``: values sent otherwise (in a form body) to scrub from error texts too."""

    values: Mapping[str, str]
    setting_name: str
    secrets: tuple[str, ...] = ()

    async def headers(self) -> Mapping[str, str]:
        return self.values

    async def refresh(self, session: aiohttp.ClientSession, rejected: Mapping[str, str]) -> bool:
        return False


Decoder = Callable[[Answer], T]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """One session, bounded concurrency, retries. Use as ``async with HttpClient(...)``."""

    def __init__(
        self,
        base_url: str,
        *,
        source: str,
        credentials: Credentials | None = None,
        default_headers: Mapping[str, str] | None = None,
        settings: HttpSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.source = source
        self.settings = settings or HttpSettings()
        self.stats = RequestStats()
        self._credentials = credentials
        self._default_headers = dict(default_headers or {})
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(self.settings.concurrency)
        # Jitter as large as the first delay: spreads retries of a burst without
        # tenacity's default of up to a whole second on every retry.
        self._backoff = wait_exponential_jitter(
            multiplier=self.settings.backoff_initial_s,
            max=self.settings.backoff_max_s,
            jitter=self.settings.backoff_initial_s,
        )

    async def __aenter__(self) -> HttpClient:
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._default_headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            # Our own JSON/XML decoding reads bytes; no need for aiohttp's charset sniffing.
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        return self._session

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        decode: Decoder[T],
        *,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Send one request and decode its answer, retrying what is transient.

        ``decode`` turns a non-retryable answer into a value or a typed error; raising
        ``TransientError`` from it (e.g. a truncated body) makes the request retry.
        """
        attempt: Callable[[], Awaitable[T]] = lambda: self._attempt(method, path, decode, params, data, headers)  # noqa: E731
        try:
            # The first attempt runs outside tenacity: its per-call machinery costs ~30 us,
            # a fifth of a whole request, and most requests succeed at once.
            return await attempt()
        except TransientError as first:
            return await self._retry(method, path, attempt, first)

    async def _retry(
        self,
        method: str,
        path: str,
        attempt: Callable[[], Awaitable[T]],
        first: TransientError,
    ) -> T:
        unreplayed = [first]

        async def replay_first_then_attempt() -> T:
            # Tenacity counts the failure that already happened as attempt 1, so its stop
            # and wait see the true attempt numbers.
            if unreplayed:
                raise unreplayed.pop()
            return await attempt()

        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before=self._count_retry,
            reraise=True,
        )
        try:
            return await retrying(replay_first_then_attempt)
        except TransientError as last:
            attempts = min(self.settings.max_attempts, getattr(last, "attempts", self.settings.max_attempts))
            raise RetriesExhaustedError(
                f"{method} {path}: still failing after {attempts} attempts ({last})"
            ) from None

    def _stop(self, state: RetryCallState) -> bool:
        """After ``max_attempts``, or sooner for an error that caps its own attempts (a
        host name that does not resolve)."""
        error = state.outcome.exception() if state.outcome else None
        cap = min(self.settings.max_attempts, getattr(error, "attempts", self.settings.max_attempts))
        return state.attempt_number >= cap

    def _count_retry(self, state: RetryCallState) -> None:
        if state.attempt_number > 1:
            self.stats.retries += 1

    def _wait(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.max_retry_after_s))
        return delay

    async def _attempt(
        self,
        method: str,
        path: str,
        decode: Decoder[T],
        params: Mapping[str, Any] | list[tuple[str, str]] | None,
        data: bytes | str | None,
        extra_headers: Mapping[str, str] | None,
        refreshed: bool = False,
    ) -> T:
        headers: dict[str, str] = {}
        sent: Mapping[str, str] = {}
        async with self._limit:
            # Credentials are taken once a slot is free: a request queued behind others
            # must not carry a token that expired while it waited.
            if self._credentials is not None:
                sent = await self._credentials.headers()
                headers.update(sent)
            if extra_headers:
                headers.update(extra_headers)
            try:
                answer = await self._exchange(method, path, params, data, headers)
            except (asyncio.TimeoutError, TimeoutError):
                raise TransientError(
                    f"{method} {path}: no complete answer within {self.settings.timeout_s:g} s"
                ) from None
            except aiohttp.ClientPayloadError as exc:
                raise TransientError(f"{method} {path}: body cut short ({type(exc).__name__})") from None
            except aiohttp.ClientConnectorCertificateError as exc:
                # Not a hiccup: the host is not who it says (or the trust store lacks its CA).
                raise SourceError(
                    f"{method} {path}: the TLS certificate of {_shown_host(exc.host)}:{exc.port} is not "
                    "trusted; check the base URL's host (or add its CA: SSL_CERT_FILE)"
                ) from None
            except aiohttp.ClientConnectorDNSError as exc:
                raise UnresolvedHostError(f"{method} {path}: cannot resolve host {_shown_host(exc.host)}") from None
            except aiohttp.ClientConnectorError as exc:
                raise TransientError(
                    f"{method} {path}: cannot connect to {_shown_host(exc.host)}:{exc.port}: {_reason(exc.os_error)}"
                ) from None
            except aiohttp.ClientError as exc:
                raise TransientError(f"{method} {path}: connection failed ({type(exc).__name__})") from None
            except SourceError as exc:
                raise _scrubbed(exc, sent, self._credentials) from None

        if answer.status == 401:
            if not refreshed and self._credentials is not None and await self._credentials.refresh(self.session, sent):
                return await self._attempt(method, path, decode, params, data, extra_headers, refreshed=True)
            setting = self._credentials.setting_name if self._credentials else "the source's credentials"
            raise AuthError(
                f"{self.source}: {method} {path} answered 401 Unauthorized; check {setting}"
            )
        if answer.status in RETRYABLE_STATUSES:
            raise TransientError(
                f"{method} {path}: HTTP {answer.status}",
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            )
        try:
            return decode(answer)
        except TransientError as exc:
            if answer.status >= 400:
                # An error status is the server's final word whatever its body looks like
                # (a proxy's HTML 404 page is not a truncated answer): never retried.
                raise self._final_error(method, path, answer.status) from None
            raise _scrubbed(TransientError(f"{method} {path}: {exc}", retry_after=exc.retry_after),
                            sent, self._credentials) from None
        except SourceError as exc:
            # A server may echo the credentials it was sent; decoders keep no server text,
            # but what they keep (an error code, a path) is scrubbed all the same.
            exc = _scrubbed(exc, sent, self._credentials)
            if isinstance(exc, NotFoundError) and answer.status == 404:
                exc.url = describe_url(URL(self.url(path)))
            raise exc from None

    def _final_error(self, method: str, path: str, status: int) -> SourceError:
        text = f"{method} {_without_query(path)}: HTTP {status}"
        if status == 404:
            error = NotFoundError(text)
            error.url = describe_url(URL(self.url(path)))
            return error
        return ApiError(text, status=status)

    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, str]] | None,
        data: bytes | str | None,
        headers: Mapping[str, str],
    ) -> Answer:
        """One answer, following redirects only within the request's origin: the
        credentials (``Authorization`` and custom headers alike) never travel to another
        origin, and no other origin's answer is read. aiohttp follows redirects itself
        only stripping ``Authorization``, hence ``allow_redirects=False``."""
        target: str | URL = self.url(path)
        origin = None  # worked out on a redirect only: no cost on the common path
        verb = method
        for _ in range(MAX_REDIRECTS + 1):
            self.stats.requests += 1
            async with self.session.request(
                verb, target, params=params, data=data, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                location = response.headers.get("Location") if status in REDIRECT_STATUSES else None
                if location is None:
                    body = await self._read_capped(method, path, response)
                    self.stats.bytes_received += len(body)
                    return Answer(status, response.headers, body)
                current = response.url
            try:
                following = current.join(URL(location))
            except (ValueError, TypeError):
                raise RedirectRefusedError(
                    f"{method} {_without_query(path)}: HTTP {status} redirect to an unreadable location"
                ) from None
            origin = origin or _origin(URL(self.url(path)))
            if _origin(following) != origin:
                raise RedirectRefusedError(
                    f"{method} {_without_query(path)}: HTTP {status} redirect to another origin "
                    f"({describe_origin(following)}) refused: credentials go to "
                    f"{describe_origin(URL(self.url(path)))} only; point the base URL at the server that answers"
                )
            if status == 303 or (status in (301, 302) and verb == "POST"):
                verb, data = "GET", None  # as browsers and aiohttp do
            target, params = following, None  # the Location carries its own query
        raise RedirectRefusedError(f"{method} {_without_query(path)}: more than {MAX_REDIRECTS} redirects")

    async def _read_capped(self, method: str, path: str, response: aiohttp.ClientResponse) -> bytes:
        """The DECODED body, refused as soon as it passes the cap: Content-Length counts
        compressed bytes (and may lie), so only bytes actually inflated are counted, as
        aiohttp inflates them chunk by chunk; a gzip bomb is abandoned at the cap."""
        cap = self.settings.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > cap and not response.headers.get("Content-Encoding"):
            raise self._too_large(method, path)
        chunks: list[bytes] = []
        size = 0
        content = response.content
        while chunk := await content.readany():
            size += len(chunk)
            if size > cap:
                raise self._too_large(method, path)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, method: str, path: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{method} {path}: answer exceeds the {self.settings.max_response_bytes:,}-byte cap; raise "
            f"{MAX_RESPONSE_VARIABLE} (or --max-response-mb) if answers this large are expected"
        )


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


_HOST = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,255}")


def describe_origin(url: URL) -> str:
    """``scheme://host:port`` of a URL, never its user info, path or query; a host that is
    not a plain host name is not quoted."""
    host = url.host or ""
    shown = host if _HOST.fullmatch(host) else "an unnamed host"
    scheme = url.scheme if url.scheme in ("http", "https") else "another scheme"
    return f"{scheme}://{shown}" + (f":{url.port}" if url.port is not None else "")


_PATH = re.compile(r"[A-Za-z0-9._~/%+-]{0,512}")


def describe_url(url: URL) -> str:
    """``scheme://host:port/path`` of a URL (:func:`describe_origin` plus the path), never
    its user info, query or fragment; a path of other characters is not quoted."""
    path = url.raw_path
    return describe_origin(url) + (path if _PATH.fullmatch(path) else "/…")


def _shown_host(host: object) -> str:
    return host if isinstance(host, str) and _HOST.fullmatch(host) else "an unnamed host"


def _reason(error: OSError | None) -> str:
    """Why a connection failed, in the operating system's words (``connection refused``)."""
    if isinstance(error, ssl.SSLError):  # its errno is OpenSSL's, not the system's
        return "TLS handshake failed"
    if error is not None and error.errno:
        return os.strerror(error.errno).lower()
    return "connection failed"


def _without_query(path: str) -> str:
    return path.split("?", 1)[0]


__all__ = [
    "Answer",
    "Credentials",
    "HttpClient",
    "HttpSettings",
    "MAX_RESPONSE_VARIABLE",
    "RequestStats",
    "SourceError",
    "StaticHeaders",
    "decode_json",
    "decode_ok_json",
    "describe_origin",
    "describe_url",
    "loads_json",
    "max_response_bytes_from_env",
    "parse_retry_after",
    "scrub",
]


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# A fragment of a secret this long is redacted wherever it appears.
SECRET_FRAGMENT = 8
# A whole secret (or a form of one) this short is still redacted where it appears whole.
SHORT_SECRET = 6


def secret_forms(credentials: Mapping[str, str], extra: Iterable[str] = ()) -> set[str]:
    """Every form in which the credentials sent may come back: each header value, its part
    after a scheme (``Bearer``, ``Basic``), a Basic pair decoded, its user and password,
    and the base64 (standard and URL-safe) of each."""
    forms: set[str] = set()
    for value in (*credentials.values(), *extra):
        scheme, _, rest = value.partition(" ")
        parts = {value, rest.strip()} if rest else {value}
        if scheme.lower() == "basic" and rest:
            try:
                pair = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                pair = ""
            if pair:
                user, _, password = pair.partition(":")
                parts |= {pair, user, password}
        for part in list(parts):
            raw = part.encode("utf-8", "surrogatepass")
            parts |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
                      base64.b64encode(raw).decode().rstrip("=")}
        forms |= {p for p in parts if len(p) >= SHORT_SECRET}
    return forms


def scrub(message: str, credentials: Mapping[str, str], extra: Iterable[str] = ()) -> str:
    """``message`` without any form of the credentials sent (:func:`secret_forms`), nor any
    fragment of one of at least ``SECRET_FRAGMENT`` characters (case-insensitive): error
    texts end up in logs, the run ledger and Prefect state messages."""
    forms = secret_forms(credentials, extra)
    if not forms:
        return message
    lowered = message.translate(_ASCII_LOWER)  # same length, unlike str.lower()
    grams = {f.translate(_ASCII_LOWER)[i:i + SECRET_FRAGMENT] for f in forms for i in range(len(f) - SECRET_FRAGMENT + 1)}
    hidden = bytearray(len(message))
    for i in range(len(message) - SECRET_FRAGMENT + 1):
        if lowered[i:i + SECRET_FRAGMENT] in grams:
            hidden[i:i + SECRET_FRAGMENT] = b"\x01" * SECRET_FRAGMENT
    for form in forms:  # the short ones, whole
        form = form.translate(_ASCII_LOWER)
        start = lowered.find(form)
        while start != -1:
            hidden[start:start + len(form)] = b"\x01" * len(form)
            start = lowered.find(form, start + 1)
    if not any(hidden):
        return message
    out: list[str] = []
    i = 0
    while i < len(message):
        if not hidden[i]:
            out.append(message[i])
            i += 1
            continue
        end = i
        while end < len(message) and hidden[end]:
            end += 1
        run = message[i:end]  # spaces around a secret (``Bearer <token>``) are not secret
        out.append(run[: len(run) - len(run.lstrip())] + "<redacted>" + run[len(run.rstrip()):])
        i = end
    return "".join(out)


def _scrubbed(exc: SourceError, sent: Mapping[str, str], credentials: Credentials | None) -> SourceError:
    """``exc`` with every form of the credentials scrubbed from its message and from its
    text attributes (an error ``code`` is server-given too)."""
    extra = getattr(credentials, "secrets", ())
    message = str(exc)
    clean = scrub(message, sent, extra)
    if clean != message:
        exc.args = (clean,)
    for name, value in vars(exc).items():
        if isinstance(value, str):
            setattr(exc, name, scrub(value, sent, extra))
    return exc


def loads_json(body: bytes) -> Any:
    """A JSON value from ``body``; ``ValueError`` if it is not JSON at all.

    orjson is the fast path. Only when it refuses, the body is read leniently, so that one
    bad character does not make a whole answer unreadable (and then retried forever):
    bytes that are not UTF-8 and lone surrogates (``"\\ud83d"``) become U+FFFD; numbers
    beyond a double (``1e400``) and ``NaN``/``Infinity`` are kept as their original text,
    a string, which the schemas refuse, so validation quarantines that record only.
    Integers beyond 64 bits become floats, as orjson reads them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return _without_surrogates(json.loads(body.decode("utf-8", "replace"), parse_float=_float_or_text,
                                              parse_int=_int_or_float, parse_constant=str))
    except RecursionError:  # nested deeper than orjson's 1,024 levels, too
        raise ValueError("JSON nested too deeply") from None


def _float_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _int_or_float(text: str) -> int | float | str:
    if len(text) <= 21:  # beyond, int() is slow or refused (int_max_str_digits), and out of range anyway
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return _float_or_text(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: Any) -> Any:
    """json.loads joins valid surrogate pairs; what is left is lone: U+FFFD. In place and
    without recursion: the value may be nested as deep as json.loads allows."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    pending = [value]
    while pending:
        node = pending.pop()
        # A list's keys are indices, a dict's are str (JSON object keys).
        entries: Iterable[tuple[Any, Any]]
        key: Any
        if isinstance(node, list):
            entries = enumerate(node)
        elif isinstance(node, dict):
            entries = list(node.items())
            node.clear()  # rebuilt in order, keys repaired too
        else:
            continue
        for key, item in entries:
            if isinstance(item, str):
                item = _SURROGATE.sub("\ufffd", item)
            elif isinstance(item, (list, dict)):
                pending.append(item)
            if isinstance(node, dict):
                node[_SURROGATE.sub("\ufffd", key)] = item
            else:
                node[key] = item
    return value


def decode_ok_json(answer: Answer) -> Any:
    """The JSON body of a 2xx answer; any other status raises its typed error (404:
    NotFoundError, else ApiError with the status), whatever the body says. For a source
    whose error bodies carry nothing to keep: an error page is never taken for data."""
    if not 200 <= answer.status < 300:
        if answer.status == 404:
            raise NotFoundError("HTTP 404")
        raise ApiError(f"HTTP {answer.status}", status=answer.status)
    return decode_json(answer)


def decode_json(answer: Answer) -> Any:
    """Parse a JSON body (:func:`loads_json`); a truncated or non-JSON body is transient
    (a proxy's error page, a connection cut mid-body) and is retried."""
    try:
        return loads_json(answer.body)
    except ValueError:
        raise TransientError(
            f"HTTP {answer.status} answer is not valid JSON ({len(answer.body)} bytes)"
        ) from None


class SourceClient:
    """Base of every source's client: opens and closes its HTTP clients together and sums
    their counters for the run ledger. A client with more than one host (RAYTeams' project,
    file and token hosts) overrides :attr:`http_clients`."""

    http: HttpClient

    @property
    def http_clients(self) -> tuple[HttpClient, ...]:
        return (self.http,)

    async def __aenter__(self) -> Self:
        for client in self.http_clients:
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.http_clients:
            await client.__aexit__(*exc)

    @property
    def requests(self) -> int:
        return sum(c.stats.requests for c in self.http_clients)

    @property
    def retries(self) -> int:
        return sum(c.stats.retries for c in self.http_clients)
