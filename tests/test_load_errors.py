"""A statement that fails inside a load's transaction reaches the user as itself."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from pwh.warehouse.connection import connect, transaction
from pwh.warehouse.load import execute_with


def test_a_failed_statement_raises_its_own_error_not_the_aborted_transactions(tmp_path):
    # DuckDB refuses everything after a failed statement until the rollback, including the
    # unregistering of the statement's frame; that refusal used to replace the real error
    # (an out-of-memory read "unexpected TransactionException").
    con = connect(tmp_path / "w.duckdb")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(duckdb.ConstraintException, match="Duplicate key"):
        with transaction(con):
            execute_with(con, "INSERT INTO t SELECT k FROM batch_t", batch_t=pl.DataFrame({"k": [2, 1]}))
    assert con.execute("SELECT k FROM t").fetchall() == [(1,)]  # rolled back whole
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'batch_t'").fetchall() == [(0,)]
    # The connection serves the next statement, and the same view name binds again.
    assert execute_with(con, "SELECT sum(k) FROM batch_t", batch_t=pl.DataFrame({"k": [2, 3]})) == [(5,)]
