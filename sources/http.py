"""The HTTP machinery every source shares: one aiohttp session, a bound on requests in
flight, per-request timeouts, a cap on answer size, retries with exponential backoff and
jitter (honouring Retry-After), and counters for the run ledger.

Sources differ only in how they read an answer (JSON envelope, HAL errors, XML), which
they pass in as a ``decode`` callable; transport failures and status codes are handled
here once.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from sources.errors import (
    AuthError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    SourceError,
    TransientError,
)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

MAX_RESPONSE_VARIABLE = "PWH_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def max_response_bytes_from_env() -> int:
    """The answer-size cap: ``PWH_MAX_RESPONSE_BYTES`` when set (bytes), else 64 MiB."""
    raw = os.environ.get(MAX_RESPONSE_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_RESPONSE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_RESPONSE_VARIABLE} must be a whole number of bytes, got {raw[:40]!r}") from None
    if value < 1:
        raise ValueError(f"{MAX_RESPONSE_VARIABLE} must be at least 1 byte")
    return value


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
    """Credentials that never change (an API token read from the environment)."""

    values: Mapping[str, str]
    setting_name: str

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
        attempt = lambda: self._attempt(method, path, decode, params, data, headers)  # noqa: E731
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
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before=self._count_retry,
            reraise=True,
        )
        try:
            return await retrying(replay_first_then_attempt)
        except TransientError as last:
            raise RetriesExhaustedError(
                f"{method} {path}: still failing after {self.settings.max_attempts} attempts ({last})"
            ) from None

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
            self.stats.requests += 1
            try:
                async with self.session.request(
                    method, self.url(path), params=params, data=data, headers=headers
                ) as response:
                    body = await self._read_capped(method, path, response)
                    answer = Answer(response.status, response.headers, body)
            except (asyncio.TimeoutError, TimeoutError):
                raise TransientError(
                    f"{method} {path}: no complete answer within {self.settings.timeout_s:g} s"
                ) from None
            except aiohttp.ClientPayloadError as exc:
                raise TransientError(f"{method} {path}: body cut short ({type(exc).__name__})") from None
            except aiohttp.ClientError as exc:
                raise TransientError(f"{method} {path}: connection failed ({type(exc).__name__})") from None
        self.stats.bytes_received += len(answer.body)
        self.stats.by_status[answer.status] = self.stats.by_status.get(answer.status, 0) + 1

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
            raise TransientError(scrub(f"{method} {path}: {exc}", sent), retry_after=exc.retry_after) from None
        except SourceError as exc:
            # A server may echo the credentials it was sent into its error message.
            message = scrub(str(exc), sent)
            if message != str(exc):
                exc.args = (message,)
            raise

    async def _read_capped(self, method: str, path: str, response: aiohttp.ClientResponse) -> bytes:
        cap = self.settings.max_response_bytes
        too_large = ResponseTooLargeError(
            f"{method} {path}: answer exceeds the {cap:,}-byte cap; raise {MAX_RESPONSE_VARIABLE} "
            "(or --max-response-mb) if answers this large are expected"
        )
        if response.content_length is not None:
            if response.content_length > cap:
                raise too_large
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


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
    "max_response_bytes_from_env",
    "parse_retry_after",
    "scrub",
]


def scrub(message: str, credentials: Mapping[str, str]) -> str:
    """``message`` without the credential values sent (nor their part after a scheme such
    as ``Bearer``): error texts end up in logs and Prefect state messages."""
    for value in credentials.values():
        for secret in (value, value.split(" ", 1)[-1]):
            if len(secret) >= 6 and secret in message:
                message = message.replace(secret, "<redacted>")
    return message


def decode_json(answer: Answer) -> Any:
    """Parse a JSON body; a truncated or non-JSON body is transient (a proxy's error page,
    a connection cut mid-body) and is retried."""
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
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

    async def __aenter__(self):
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
