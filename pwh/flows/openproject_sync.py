"""The OpenProject adapter (its sync is made from the registry: pwh/flows/syncs.py): the client, transform and tables wired into the engine.

Unit = project (key: its id as text); cursor = its ``updatedAt`` plus a work-package
marker (``wp:<count>:<latest updatedAt>``), because OpenProject does not move a project's
``updatedAt`` when one of its work packages changes. Abbreviated list elements are
completed while listing, so every unit has its cursor before planning, and an unchanged
project costs one small probe request beyond the list."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pwh.flows.engine import ClientAdapter, Listing, Unit
from pwh.flows.registry import OPENPROJECT
from pwh.flows.runner import OpenedAdapter
from pwh.flows.secrets import read_secret
from pwh.flows.streams import UnitStreams, choose_streams
from pwh.schemas import openproject as tables
from pwh.sources.errors import AuthError, NotFoundError, SourceError
from pwh.sources.http import HttpSettings
from pwh.sources.openproject.client import (
    TOKEN_VARIABLE,
    OpenProjectClient,
    ProjectPayload,
    check_filters,
    is_abbreviated,
    subtree_filters,
)
from pwh.transforms.frames import TableBatch
from pwh.transforms.openproject import transform_dimensions, transform_projects, work_package_schema_id
from pwh.transforms.redact import redact_unknown_source
from pwh.warehouse.load import UnitState

log = logging.getLogger("pwh.openproject")


class OpenProjectAdapter(ClientAdapter[OpenProjectClient]):
    source = "openproject"
    dimension_tables = tables.DIMENSION_TABLES
    tables = tables.TABLES
    streams = OPENPROJECT.streams
    # A run reads only the schemas of the work packages it fetched: other definitions stay.
    upserted_dimensions = frozenset({"custom_fields"})
    redact = staticmethod(redact_unknown_source)

    def __init__(self, client: OpenProjectClient, *, account: str, probe_work_packages: bool = True,
                 filters: str | None = None) -> None:
        self.client = client
        self.account = account
        self.probe_work_packages = probe_work_packages
        self.filters = check_filters(filters)
        self.work_package_schemas: set[str] = set()  # `<project>-<type>` of the work packages fetched

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        elements = await self.client.list_projects(self.filters)
        unnamed = sum(1 for e in elements if not _has_id(e))
        if unnamed:
            log.warning("the project list held %d elements without an id; they cannot be fetched", unnamed)
        elements = [e for e in elements if _has_id(e)]
        listed = await asyncio.gather(*(self._complete_and_probe(e) for e in elements), return_exceptions=True)
        units = []
        for element, result in zip(elements, listed):
            key = str(element["id"])
            if isinstance(result, AuthError):
                raise result
            if isinstance(result, NotFoundError):
                log.info("project %s is listed but not visible in full to this key: skipped", key)
                continue
            if isinstance(result, SourceError):
                # Completed again (and recorded as failed if it still fails) when fetched.
                units.append(Unit(key, None, element))
                continue
            if isinstance(result, BaseException):
                raise result
            project, marker = result
            cursor = project_cursor(project)
            if cursor is not None and marker is None:
                cursor = None  # the probe failed: fetch the project in full
            elif cursor is not None and marker:
                cursor = f"{cursor}|{marker}"
            units.append(Unit(key, cursor, project))
        # A filtered list is not the account: a project it leaves out is not gone.
        return Listing(units, complete=self.filters is None)

    async def _complete_and_probe(self, element: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The whole project and, when probing, its work-package marker: a project's
        ``updatedAt`` does not move when only its work packages change."""
        project = await self.client.complete(element)
        if not self.probe_work_packages:
            return project, ""
        try:
            return project, await self.client.work_package_marker(project)
        except AuthError:
            raise
        except SourceError as exc:
            log.info("work-package probe of project %s failed (%s): fetched in full", element.get("id"), exc)
            return project, None

    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> ProjectPayload:
        entry = unit.entry
        listed = entry if isinstance(entry, dict) else None
        payload = await self.client.fetch_project_payload(unit.key, listed, streams.fetch)
        for work_package in payload.linked.get("work_packages", []):
            schema_id = work_package_schema_id(work_package)
            if schema_id is not None:
                self.work_package_schemas.add(schema_id)
        return payload

    def transform(self, fetched: list[ProjectPayload]) -> TableBatch:
        return transform_projects(fetched, account=self.account)

    async def fetch_dimension(self, name: str) -> Any:
        if name == "custom_fields":
            project = await self.client.fetch_project_schema()
            schemas = await self.client.fetch_work_package_schemas(sorted(self.work_package_schemas))
            return {"project": project, "work_package": schemas}
        if name == "statuses":
            return await self.client.list_statuses()
        if name == "users":
            return await self.client.list_users()
        raise ValueError(f"openproject has no dimension stream {name!r}")

    def transform_dimensions(self, fetched: Mapping[str, Any]) -> TableBatch:
        return transform_dimensions(fetched, account=self.account)


def _has_id(element: Any) -> bool:
    return isinstance(element, dict) and isinstance(element.get("id"), int) and not isinstance(element.get("id"), bool)


def project_cursor(project: Mapping[str, Any]) -> str | None:
    """The incremental cursor: ``updatedAt`` as sent. None (absent, or the element is
    still abbreviated) makes the project count as changed on every run."""
    if is_abbreviated(project):
        return None
    updated = project.get("updatedAt")
    return updated if isinstance(updated, str) and updated else None


def open_openproject(parameters: dict[str, Any], settings: HttpSettings) -> OpenedAdapter:
    """The adapter of a sync's parameters (pwh/flows/syncs.py).

    Incremental runs fetch a project when its ``updatedAt`` or its work-package marker
    (count and latest ``updatedAt``, one small request a project) moved;
    ``probe_work_packages=False`` relies on the project's ``updatedAt`` alone. The API key
    comes from OPENPROJECT_API_KEY (or the Prefect Secret block ``openproject-api-key``).

    ``filters`` (JSON text, as the API's project list takes it, e.g. a subtree:
    ``[{"ancestor":{"operator":"=","values":["12"]}}]``) syncs only the projects it
    selects; a project it leaves out is kept as it is, never marked deleted. ``under`` (a
    project id) adds the filter of its subtree (``ancestor = under``).

    Once a run, after the projects, the instance's custom field definitions, work-package
    statuses and users are loaded (``openproject.custom_fields``/``statuses``/``users``);
    one that cannot be read (e.g. users: 403 for a key that may not list them) keeps its
    rows and makes the run ``partial``.
    """
    client = OpenProjectClient.connect(parameters["base_url"], api_key=read_secret(TOKEN_VARIABLE),
                                       page_size=parameters["page_size"], settings=settings)
    # The probe is a request to the work-package stream: none when that stream is not fetched.
    probe_work_packages = parameters["probe_work_packages"] and "work_packages" in choose_streams(
        OPENPROJECT.name, OPENPROJECT.streams, parameters["select"] or (), parameters["exclude"] or ())
    adapter = OpenProjectAdapter(client, account=parameters["account"], probe_work_packages=probe_work_packages,
                                 filters=subtree_filters(check_filters(parameters["filters"]), parameters["under"]))
    return OpenedAdapter(adapter, tables.TABLES + tables.DIMENSION_TABLES)
