"""The loader of a sharded sync: the one writer that loads staged shards
(pwh/warehouse/staging.py) into the warehouse, one shard per transaction: its run's
ledger row, every batch (with pwh/warehouse/load.py's replace semantics), the deletions it
proved, and its row in ``pipeline.shard_loads``, which makes a shard load once however
often it or the loader is retried. A loader killed mid-shard leaves the shard unloaded
(the transaction never committed); run again, it loads it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from pwh.warehouse.catalog import all_tables
from pwh.warehouse.connection import transaction
from pwh.warehouse.crashpoints import crash_point
from pwh.warehouse.load import mark_units_deleted, write_units
from pwh.warehouse.pseudonym_keys import PseudonymKeyError, recorded_fingerprint
from pwh.warehouse.runs import record_account, write_run_row
from pwh.warehouse.staging import StagedShard, StagingError, finished_shards

log = logging.getLogger("pwh.shards")


@dataclass(frozen=True)
class ShardLoad:
    manifest_id: str
    run_id: str
    status: str  # the shard run's own status (success, partial, failed, interrupted)
    units: int
    rows: int
    loaded: bool  # False: the load log already had it


def load_staged(con: duckdb.DuckDBPyConnection, root: str) -> list[ShardLoad]:
    """Load every finished shard under ``root`` that the load log does not hold yet."""
    return [load_shard(con, shard) for shard in finished_shards(root)]


def load_shard(con: duckdb.DuckDBPyConnection, shard: StagedShard) -> ShardLoad:
    run = shard.run
    manifest = shard.manifest
    tables_by_name = {table.qualified_name: table for table in all_tables()}
    unknown = [name for name in manifest["tables"] if name not in tables_by_name]
    if unknown:
        raise StagingError(f"{shard.folder}: staged tables {', '.join(unknown)} are unknown to this pwh: "
                           "load it with the pwh that staged it")
    tables = [tables_by_name[name] for name in manifest["tables"]]
    units = rows = 0
    with transaction(con):
        if con.execute("SELECT 1 FROM pipeline.shard_loads WHERE manifest_id = ?",
                       [shard.manifest_id]).fetchall():
            return ShardLoad(shard.manifest_id, run.run_id, run.status, 0, 0, loaded=False)
        recorded = recorded_fingerprint(con)
        if manifest["fingerprint"] is not None and recorded is not None and manifest["fingerprint"] != recorded:
            raise PseudonymKeyError(
                f"shard {shard.manifest_id} was staged with pseudonym key {manifest['fingerprint'][:12]}, not this "
                f"warehouse's ({recorded[:12]}): give its workers the warehouse's PWH_PSEUDONYM_KEY and sync again")
        # What the warehouse holds now decides which units' rows are replaced (never the
        # shard's view of a state read before it ran: a unit it thought new may be stored).
        known = {key for (key,) in con.execute(
            "SELECT unit_key FROM pipeline.unit_state WHERE source = ? AND account = ?",
            [run.source, run.account]).fetchall()}
        record_account(con, source=run.source, account=run.account, region=manifest["region"],
                       base_url=manifest["base_url"], run_id=run.run_id, now=run.started_at)
        for batch in shard.batches():
            cursors = batch.cursors()
            quarantine, field_issues = batch.pipeline_frames()
            inserted = write_units(
                con, source=run.source, account=run.account, run_id=run.run_id, tables=tables, cursors=cursors,
                frames=batch.frames(), quarantine=quarantine, field_issues=field_issues, now=batch.now,
                stored=[key for key in cursors if key in known],
                partial_tables=batch.entry["partial_tables"], kept_tables=batch.entry.get("kept_tables"),
                missing_streams=batch.entry.get("missing_streams"),
            )
            units += len(cursors)
            rows += sum(inserted.values())
        deleted = shard.deleted()
        if deleted is not None:
            keys, when = deleted
            run.units_deleted = mark_units_deleted(con, source=run.source, account=run.account, unit_keys=keys,
                                                   tables=tables, now=when)
        write_run_row(con, run)
        con.execute(
            "INSERT INTO pipeline.shard_loads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [shard.manifest_id, manifest["attempt"], run.run_id, run.source, run.account, units, rows,
             datetime.now(timezone.utc)],
        )
        crash_point("shard-load-before-commit")
    crash_point("shard-load-after-commit")
    log.info("loaded shard %s (%s/%s, run %s, %s): %d projects, %d rows", shard.manifest_id, run.source,
             run.account, run.run_id, run.status, units, rows)
    return ShardLoad(shard.manifest_id, run.run_id, run.status, units, rows, loaded=True)
