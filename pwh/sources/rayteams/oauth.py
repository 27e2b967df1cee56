"""RAYTeams OAuth 2.0: regions, their hosts, and access tokens renewed from a refresh token.

RAYTeams isolates data and tokens by region: a token issued by one region's token
endpoint is refused by every other region's API. An access token lives a day (the
example answer says ``expires_in: 3600``), a refresh token a year; a sync that runs on a
schedule for months must therefore renew its access token by itself:

* ``POST <token endpoint>`` with ``application/x-www-form-urlencoded`` body
  ``grant_type=refresh_token&client_id=…&refresh_token=…`` and the client id and secret as
  HTTP basic auth (``client_secret_basic``); the answer is ``{"access_token", "id_token",
  "token_type": "Bearer", "expires_in"}`` or ``{"error": "invalid_grant" | …}``.

:class:`OAuthCredentials` implements :class:`pwh.sources.http.Credentials`: it renews the token
before ``expires_in`` runs out (minus a margin), and again when the API answers 401
mid-sync (``HttpClient`` then retries the request once). A lock makes a burst of
concurrent 401s for one token renew it once. The token endpoint is called through the
shared :class:`HttpClient` (timeouts, retries of 429/5xx, size cap).

No token, secret or refresh token ever appears in a message, log line or exception.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from pwh.sources.errors import ApiError, AuthError
from pwh.sources.http import Answer, HttpClient, HttpSettings, StaticHeaders, decode_json

# platformapi-appendix/region.md: the 13 regions, plus ap-east-1 (China/Hong Kong only).
REGIONS = (
    "ap-northeast-1", "ap-northeast-2", "us-east-1", "ap-south-1", "ap-southeast-1",
    "ap-southeast-2", "ca-central-1", "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3",
    "eu-north-1", "sa-east-1", "ap-east-1",
)
API_VERSION = "v1.0"
# The token host the docs show (get-access-token.md) is
# ``oauth-ap-northeast-2-development.rayteams.com``: "oauth-<region>-<stage>". It is the
# only form documented, so it is the default; an account may set another stage ("" for
# ``oauth-<region>.rayteams…``) or its exact ``token_url``.
DEFAULT_OAUTH_STAGE = "development"
_SANDBOX = re.compile(r"^[a-z0-9-]*$")
_STAGE = re.compile(r"^[a-z0-9-]*$")
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")

log = logging.getLogger("pwh.rayteams.oauth")

# Renew this long before the announced expiry (at most a tenth of the token's life).
DEFAULT_MARGIN_S = 60.0


def check_region(region: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"unknown RAYTeams region {region!r}; the regions are {', '.join(REGIONS)}")
    return region


def _check_sandbox(sandbox: str) -> str:
    if not _SANDBOX.match(sandbox):
        raise ValueError(f"sandbox {sandbox!r} may hold only lowercase letters, digits and '-'")
    return sandbox


def api_base_url(region: str, sandbox: str = "") -> str:
    """``https://api-<region>-project.rayteams<sandbox>.com/v1.0`` (api-overview.md); the
    FILE scope host is derived from it by :func:`pwh.sources.rayteams.client.file_base_url`."""
    return f"https://api-{check_region(region)}-project.rayteams{_check_sandbox(sandbox)}.com/{API_VERSION}"


def token_endpoint(region: str, sandbox: str = "", stage: str = DEFAULT_OAUTH_STAGE) -> str:
    """``https://oauth-<region>[-<stage>].rayteams<sandbox>.com/oauth2/token``."""
    if not _STAGE.match(stage):
        raise ValueError(f"oauth stage {stage!r} may hold only lowercase letters, digits and '-'")
    host = f"oauth-{check_region(region)}" + (f"-{stage}" if stage else "")
    return f"https://{host}.rayteams{_check_sandbox(sandbox)}.com/oauth2/token"


class TokenRefusedError(AuthError):
    """The token endpoint refused to issue an access token (``{"error": …}``)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SecretNames:
    """Where each secret of an account is set (named in error messages; never the values)."""

    client_id: str
    client_secret: str
    refresh_token: str


@dataclass(frozen=True)
class _Token:
    value: str
    header: str  # "Bearer <value>"
    renew_at: float  # clock time after which it is renewed before use


class OAuthCredentials:
    """Access tokens of one RAYTeams account, renewed from its refresh token.

    Open with ``async with`` (or let :class:`RayteamsClient` open it): it owns the
    HttpClient that talks to the token endpoint.
    """

    def __init__(
        self,
        *,
        account: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        names: SecretNames,
        settings: HttpSettings | None = None,
        margin_s: float = DEFAULT_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self.token_url = token_url
        self.names = names
        # Named when the API still answers 401 to a freshly renewed token.
        self.setting_name = (
            f"the region / base_url of RAYTeams account {account!r} (a region refuses another "
            f"region's tokens) and {names.client_id}"
        )
        self._client_id = client_id
        self._refresh_token = refresh_token
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.http = HttpClient(
            token_url,
            source="rayteams",
            credentials=StaticHeaders(
                {"Authorization": f"Basic {basic}"},
                setting_name=f"{names.client_id} and {names.client_secret} (account {account!r})",
                # Sent in the form body, not a header: scrubbed from error texts all the same.
                secrets=(refresh_token, client_secret),
            ),
            default_headers={"Accept": "application/json"},
            settings=settings,
        )
        self._margin_s = margin_s
        self._clock = clock
        self._token: _Token | None = None
        self._refused: TokenRefusedError | None = None  # a refused refresh token stays refused
        self._lock = asyncio.Lock()
        self.renewals = 0  # tokens obtained (tests and the ledger count them; never the values)

    async def __aenter__(self) -> OAuthCredentials:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.__aexit__(*exc)
        self._token = None

    # ------------------------------------------------------------------ Credentials
    async def headers(self) -> Mapping[str, str]:
        token = self._token
        if token is None or self._clock() >= token.renew_at:
            token = await self._renew(stale=token)
        return {"Authorization": token.header, "x-rayteams-client-id": self._client_id}

    async def refresh(self, session: aiohttp.ClientSession, rejected: Mapping[str, str]) -> bool:
        """A 401: renew, unless a newer token than the refused one exists already."""
        current = self._token
        if current is not None and rejected.get("Authorization") != current.header:
            return True  # another request renewed it meanwhile: just retry
        await self._renew(stale=current, force=True)
        return True

    # ------------------------------------------------------------------ renewal
    async def _renew(self, *, stale: _Token | None, force: bool = False) -> _Token:
        async with self._lock:
            current = self._token
            if current is not None and current is not stale and (force or self._clock() < current.renew_at):
                return current  # renewed while this caller waited for the lock
            if self._refused is not None:
                raise self._refused
            self._token = None
            started = self._clock()
            try:
                value, expires_in, rotated = await self.http.request(
                    "POST", self.token_url, self._read_token, data=self._form(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            except TokenRefusedError as refused:
                self._refused = refused
                raise
            if rotated and rotated != self._refresh_token:
                # The documented answer has no refresh_token; a server that rotates them
                # would invalidate the stored one: use the new one now, and say so.
                self._refresh_token = rotated
                log.warning(
                    "RAYTeams account %r: the token endpoint issued a new refresh token; this run uses it, "
                    "but %s still holds the old one: if it is refused later, obtain a new one",
                    self.account, self.names.refresh_token,
                )
            margin = min(self._margin_s, expires_in / 10)
            self._token = _Token(value, f"Bearer {value}", started + expires_in - margin)
            self.renewals += 1
            return self._token

    def _form(self) -> str:
        return urlencode(
            {"grant_type": "refresh_token", "client_id": self._client_id, "refresh_token": self._refresh_token}
        )

    def _read_token(self, answer: Answer) -> tuple[str, float, str | None]:
        body = decode_json(answer)
        if isinstance(body, dict) and "error" in body:
            raw = body["error"]
            # Quote only what looks like an OAuth error code: a server could echo anything.
            code = raw if isinstance(raw, str) and _ERROR_CODE.match(raw) else "unrecognised error code"
            raise TokenRefusedError(self._refusal(code), code=code)
        if answer.status >= 400:
            raise ApiError(f"RAYTeams account {self.account!r}: token endpoint answered HTTP {answer.status}",
                           status=answer.status)
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError(f"RAYTeams account {self.account!r}: the token endpoint's answer has no access_token")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            raise ApiError(f"RAYTeams account {self.account!r}: the token endpoint's answer has no positive expires_in")
        token_type = body.get("token_type", "Bearer")
        if isinstance(token_type, str) and token_type.lower() != "bearer":
            raise ApiError(f"RAYTeams account {self.account!r}: the token endpoint issued a token that is not a Bearer token")
        rotated = body.get("refresh_token")
        return token, float(expires_in), rotated if isinstance(rotated, str) and rotated else None

    def _refusal(self, code: str) -> str:
        who = f"RAYTeams account {self.account!r}"
        names = self.names
        if code == "invalid_grant":
            return (f"{who}: the token endpoint refused the refresh token (invalid_grant): it has expired "
                    f"(refresh tokens live one year), was revoked, or belongs to another client or region. "
                    f"Obtain a new one (authorization-code login) and set {names.refresh_token}")
        if code in ("invalid_client", "unauthorized_client"):
            return (f"{who}: the token endpoint refused the client ({code}); check {names.client_id} and "
                    f"{names.client_secret}, and that the account's region is the one they were issued for")
        return f"{who}: the token endpoint refused to issue a token ({code}); check the account's settings"

