"""One TLS context for all of Prefect's API clients when the API is plain http.

Each client Prefect makes for a flow run (the engine's, the result-storage lookup's, the
events and log workers', and the events client's server-version check) builds its own
verified TLS context from certifi's bundle, ~18 ms of CPU each (more on a busy machine),
five a run, three of them on Prefect's background thread competing with the sync for two
cores (docs/performance.md, "Prefect start-up"). With an ``http://`` API URL (a local or
in-cluster server) none of them negotiates TLS, so they share one context, made by the
very call Prefect makes (should the server redirect to https, which Prefect's clients
follow, that context verifies it as before). An ``https://`` API, an insecure
(unverified) setup or any other call gets a context of its own, as before: what a TLS
connection verifies does not change.

This replaces the name ``ssl`` inside the two Prefect modules that build those contexts
(a monkeypatch: Prefect offers no setting for it); a Prefect that builds them elsewhere
is left as it is, and tests/test_prefect_tls.py fails."""

from __future__ import annotations

import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import prefect._internal.version_checking
import prefect.client.orchestration
from prefect.settings import get_current_settings

# The Prefect modules whose ``ssl.create_default_context(cafile=...)`` builds a client's
# context (PrefectClient, SyncPrefectClient, check_server_version).
PATCHED_MODULES = (prefect.client.orchestration, prefect._internal.version_checking)


def api_is_plain_http() -> bool:
    url = get_current_settings().api.url
    return isinstance(url, str) and urlsplit(url).scheme.lower() == "http"


class SharedContextSSL:
    """The ``ssl`` module as those Prefect modules see it: all of it is ``ssl``'s, except
    that a verified client context for a CA file, asked for while the API is plain http,
    is made once and then shared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    def create_default_context(self, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH, *, cafile: str | None = None,
                               capath: str | None = None, cadata: str | bytes | None = None) -> ssl.SSLContext:
        # No CA file: Prefect's insecure branch, which then turns verification off on
        # the context it gets; it must get a context of its own.
        if cafile is None or capath is not None or cadata is not None or purpose != ssl.Purpose.SERVER_AUTH \
                or not api_is_plain_http():
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        with self._lock:
            context = self._contexts.get(cafile)
            if context is None:
                context = self._contexts[cafile] = ssl.create_default_context(cafile=cafile)
            return context


SHARED = SharedContextSSL()


def share_tls_contexts() -> None:
    """Installs ``SHARED`` in Prefect's client modules (idempotent). A module that no
    longer names the ssl module is left as it is (tests/test_prefect_tls.py says so)."""
    for module in PATCHED_MODULES:
        if vars(module).get("ssl") is ssl:
            module.ssl = SHARED  # type: ignore[attr-defined]
