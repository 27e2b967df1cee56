"""What a run holds of the warehouse in memory: an integrity scan leaves the file out of
DuckDB's buffer pool, and the committed state of a large account is held compactly."""

from __future__ import annotations

import duckdb
import pytest

from pwh.warehouse import integrity
from pwh.warehouse.connection import connect
from pwh.warehouse.integrity import SCAN_MEMORY, check_copy, check_primary
from pwh.warehouse.load import STATE_CHUNK, read_state
from pwh.warehouse.migrations import migrate


def buffered_bytes(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0]


def limit_of(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A warehouse file of ~2x SCAN_MEMORY that does not compress away."""
    path = tmp_path_factory.mktemp("big") / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS a, md5(range::VARCHAR) || md5((range + 1)::VARCHAR) AS b "
                "FROM range(4_500_000)")
    con.close()
    assert path.stat().st_size > 2 * SCAN_MEMORY
    return path


@pytest.mark.parametrize("configured", [None, "300MB"])
def test_the_primarys_check_reads_every_block_without_keeping_them(big_file, monkeypatch, configured):
    if configured:
        monkeypatch.setenv("PWH_DUCKDB_MEMORY", configured)
    con = connect(big_file)
    try:
        before = limit_of(con)
        assert check_primary(con, big_file) == {"main.t": 4_500_000}
        # The file is ~2x the scan's limit: it was read through the pool, not kept in it.
        assert buffered_bytes(con) <= SCAN_MEMORY
        assert limit_of(con) == before  # the writer's own limit again (pwh's default, or the variable's)
    finally:
        con.close()


def test_where_the_bound_is_too_small_the_scan_runs_again_under_the_connections_own_limit(big_file, monkeypatch):
    # What a scan needs grows with DuckDB's threads and the tables' columns: on a machine
    # with many cores 64 MB can be short. That is never reported as damage.
    monkeypatch.setattr(integrity, "SCAN_MEMORY", 1 << 20)
    con = connect(big_file)
    try:
        before = limit_of(con)
        assert check_primary(con, big_file) == {"main.t": 4_500_000}
        assert limit_of(con) == before
    finally:
        con.close()
    assert check_copy(big_file) == {"main.t": 4_500_000}


def test_a_scan_short_of_the_users_own_limit_is_out_of_memory_not_damage(big_file, monkeypatch):
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", "8MB")
    con = connect(big_file)
    try:
        con.execute("SET threads = 64")  # a scan of this file needs more than 8 MB then
        with pytest.raises(duckdb.OutOfMemoryException):
            check_primary(con, big_file)
    finally:
        con.close()


def test_a_large_accounts_state_is_read_whole_with_its_run_ids_and_stream_sets_shared(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    units = 2 * STATE_CHUNK + 7  # more than one chunk, and a partial last one
    con.execute(
        "INSERT INTO pipeline.unit_state (source, account, unit_key, cursor, first_seen_at, synced_at, run_id, "
        "deleted_at, missing_streams) SELECT 'rayteams', 'a', 'p' || range, 'c' || range, now(), now(), "
        "'run-' || (range % 2), CASE WHEN range % 5 = 0 THEN now() END, "
        "CASE WHEN range % 3 = 0 THEN 'files,memos' END FROM range(?)", [units])
    con.execute("INSERT INTO pipeline.unit_state (source, account, unit_key, cursor, first_seen_at, synced_at, run_id) "
                "VALUES ('rayteams', 'b', 'other', 'c', now(), now(), 'run-9')")
    states = read_state(con, "rayteams", "a")
    assert len(states) == units and "other" not in states
    for i in (0, 1, 3, STATE_CHUNK, units - 1):
        state = states[f"p{i}"]
        assert (state.cursor, state.deleted, state.run_id) == (f"c{i}", i % 5 == 0, f"run-{i % 2}")
        assert state.missing_streams == (frozenset({"files", "memos"}) if i % 3 == 0 else frozenset())
    assert states["p0"].run_id is states["p2"].run_id
    assert states["p0"].missing_streams is states["p3"].missing_streams
    assert states["p1"].missing_streams is states["p2"].missing_streams
    con.close()
