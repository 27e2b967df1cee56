"""A shard's staged output: what a sharded sync's shard would have loaded, written to a
staging folder instead of the warehouse (a shard never opens it), for the one loader
(pwh/warehouse/shard_load.py) to load.

Layout: ``<root>/<shard>/<attempt>/`` holds one folder per batch (a Parquet file per
table with rows, the quarantined records, the field issues, the units with their
cursors), the units the shard proved deleted, and ``manifest.json``, written last, under
a temporary name then renamed: an attempt without a manifest (a worker killed mid-shard)
is never loaded. A retried shard stages another attempt beside the first; the loader
loads one attempt per shard. The staging location is a local (or mounted) folder: object
storage would need fsspec paths and a put-then-marker protocol, not built yet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import polars as pl

from pwh.errors import PwhError
from pwh.schemas.rows import RejectedRecord, RowIssue
from pwh.schemas.spec import Table
from pwh.warehouse.load import UnitState, issues_frame, quarantine_frame
from pwh.warehouse.runs import RunRecord

FORMAT = 1
MANIFEST = "manifest.json"
QUARANTINE, FIELD_ISSUES, UNITS, DELETED = "_quarantine", "_field_issues", "_units", "_deleted"
UNITS_SCHEMA = {"unit_key": pl.Utf8, "cursor": pl.Utf8}


class StagingError(PwhError, RuntimeError):
    """A staged shard cannot be read (an unknown format, a missing file)."""


def shard_folder(root: Path | str, manifest_id: str) -> Path:
    return Path(root) / quote(manifest_id, safe="")


class StagingSink:
    """The engine's sink for a shard (pwh/flows/engine.py ``Sink``): reads the committed
    state it was given, writes every batch into a new attempt folder, and :meth:`finish`
    writes the manifest. ``fingerprint``: the pseudonym key's, checked by the loader."""

    def __init__(self, root: Path | str, manifest_id: str, state: Mapping[str, UnitState],
                 fingerprint: str | None = None) -> None:
        self.manifest_id = manifest_id
        self.attempt = uuid.uuid4().hex
        self.folder = shard_folder(root, manifest_id) / self.attempt
        # Owner-only, as the warehouse file: the rows are the warehouse's.
        self.folder.mkdir(parents=True, mode=0o700)
        self.state = dict(state)
        self.fingerprint = fingerprint
        self.run: RunRecord | None = None
        self.where: dict[str, str | None] = {}
        self.tables: list[str] = []
        self.batches: list[dict[str, Any]] = []
        self.deleted: dict[str, Any] | None = None

    def read_state(self, source: str, account: str) -> dict[str, UnitState]:
        return dict(self.state)

    def resumed_runs(self, source: str, account: str, run_id: str) -> set[str]:
        return set()  # a shard's attempt starts from the committed state, whole

    def start_run(self, run: RunRecord, *, region: str | None, base_url: str | None) -> None:
        self.run = run
        self.where = {"region": region, "base_url": base_url}

    def save_run(self, run: RunRecord) -> None:
        self.run = run

    def replace_units(
        self, *, source: str, account: str, run_id: str, tables: Sequence[Table],
        cursors: Mapping[str, str | None], frames: Mapping[str, pl.DataFrame],
        rejected: Iterable[RejectedRecord], now: datetime, stored: Collection[str] | None = None,
        partial_tables: Collection[str] = (), issues: Iterable[RowIssue] = (),
        kept_tables: Mapping[str, Collection[str]] | None = None,
        missing_streams: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, int]:
        """Stage one batch (``stored`` is not kept: the loader sees what the warehouse holds;
        the units' kept tables and missing streams go into the manifest, loaded as a sync would)."""
        folder = self.folder / f"batch-{len(self.batches):05d}"
        folder.mkdir()
        self.tables = [table.qualified_name for table in tables]
        rows: dict[str, int] = {}
        for table in tables:
            frame = frames.get(table.name)
            rows[table.name] = 0 if frame is None else frame.height
            if frame is not None and frame.height:
                _write(frame, folder / f"{table.name}.parquet")
        quarantine = quarantine_frame(source, account, run_id, rejected, now)
        field_issues = issues_frame(source, account, run_id, issues, now)
        units = pl.DataFrame({"unit_key": list(cursors), "cursor": list(cursors.values())}, schema=UNITS_SCHEMA)
        for name, frame in ((QUARANTINE, quarantine), (FIELD_ISSUES, field_issues), (UNITS, units)):
            _write(frame, folder / f"{name}.parquet")
        _fsync_folder(folder)
        self.batches.append({
            "folder": folder.name, "rows": rows, "units": units.height, "quarantined": quarantine.height,
            "field_issues": field_issues.height, "partial_tables": sorted(partial_tables), "now": now,
            "kept_tables": {key: sorted(names) for key, names in (kept_tables or {}).items() if names},
            "missing_streams": {key: sorted(names) for key, names in (missing_streams or {}).items() if names},
        })
        return rows

    def mark_deleted(self, *, source: str, account: str, unit_keys: Iterable[str], tables: Sequence[Table],
                     now: datetime) -> int:
        """Stage the units the run proved gone; returns how many were live in the state."""
        keys = sorted(set(unit_keys))
        if not keys:
            return 0
        self.tables = [table.qualified_name for table in tables]  # a shard may stage deletions only
        _write(pl.DataFrame({"unit_key": keys}, schema={"unit_key": pl.Utf8}), self.folder / f"{DELETED}.parquet")
        self.deleted = {"units": len(keys), "now": now}
        return sum(1 for key in keys if key in self.state and not self.state[key].deleted)

    def finish(self) -> Path | None:
        """Write the manifest (last, atomically); None when the run never started."""
        if self.run is None:
            return None
        manifest = {
            "format": FORMAT, "manifest_id": self.manifest_id, "attempt": self.attempt,
            "written_at": datetime.now(timezone.utc), "fingerprint": self.fingerprint, **self.where,
            "run": self.run.row(), "tables": self.tables, "batches": self.batches, "deleted": self.deleted,
        }
        _fsync_folder(self.folder)
        path = self.folder / MANIFEST
        temporary = self.folder / f".{MANIFEST}.{os.getpid()}.tmp"
        with open(temporary, "wb") as out:
            out.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        _fsync_folder(self.folder)
        return path


@dataclass(frozen=True)
class StagedShard:
    """A finished attempt of a shard, as its manifest describes it."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def manifest_id(self) -> str:
        return str(self.manifest["manifest_id"])

    @property
    def run(self) -> RunRecord:
        values = dict(self.manifest["run"])
        for name in ("started_at", "ended_at"):
            values[name] = _timestamp(values[name])
        for name in ("failed_units", "rows_loaded"):
            values[name] = orjson.loads(values[name]) if values[name] else {}
        return RunRecord(**values)

    def batches(self) -> Iterable[StagedBatch]:
        for batch in self.manifest["batches"]:
            yield StagedBatch(self.folder / batch["folder"], batch)

    def deleted(self) -> tuple[list[str], datetime] | None:
        if not self.manifest["deleted"]:
            return None
        keys = pl.read_parquet(self.folder / f"{DELETED}.parquet")["unit_key"].to_list()
        return keys, _moment(self.manifest["deleted"]["now"])


@dataclass(frozen=True)
class StagedBatch:
    folder: Path
    entry: dict[str, Any]

    def frames(self) -> dict[str, pl.DataFrame]:
        return {name: pl.read_parquet(self.folder / f"{name}.parquet") for name, rows in self.entry["rows"].items()
                if rows}

    def cursors(self) -> dict[str, str | None]:
        units = pl.read_parquet(self.folder / f"{UNITS}.parquet")
        return dict(zip(units["unit_key"].to_list(), units["cursor"].to_list(), strict=True))

    def pipeline_frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        return (pl.read_parquet(self.folder / f"{QUARANTINE}.parquet"),
                pl.read_parquet(self.folder / f"{FIELD_ISSUES}.parquet"))

    @property
    def now(self) -> datetime:
        return _moment(self.entry["now"])


def finished_shards(root: Path | str) -> list[StagedShard]:
    """Every shard under ``root`` that has a finished attempt, in name order; of a shard
    staged more than once, the last attempt that ran to the end (success or partial),
    else its last attempt. Attempts without a manifest are ignored."""
    by_shard: dict[str, list[StagedShard]] = {}
    for path in sorted(Path(root).glob(f"*/*/{MANIFEST}")):
        manifest = orjson.loads(path.read_bytes())
        if manifest.get("format") != FORMAT:
            raise StagingError(f"{path}: staging format {manifest.get('format')!r}, this pwh reads {FORMAT}: "
                               "load it with the pwh that staged it")
        by_shard.setdefault(manifest["manifest_id"], []).append(StagedShard(path.parent, manifest))
    chosen = []
    for manifest_id in sorted(by_shard):
        attempts = sorted(by_shard[manifest_id], key=lambda s: (
            s.manifest["run"]["status"] in ("success", "partial"), s.manifest["written_at"]))
        chosen.append(attempts[-1])
    return chosen


def _write(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path)
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _moment(value: str) -> datetime:
    """A time stamp the manifest always has."""
    return datetime.fromisoformat(value)
