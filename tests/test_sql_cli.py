"""`pwh sql -c` and `pwh --version` as a user runs them: real subprocesses over a real
replica. Every row by default, `--limit` to cap, CSV/JSON/Parquet to stdout or to an
owner-only file (even under umask 000), choices listed in `--help`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pwh.warehouse.connection import connect
from pwh.warehouse.replica import publish_replica

ROOT = Path(__file__).resolve().parent.parent
# 991 rows with text that needs quoting, non-ASCII text, NULLs, timestamps and decimals.
QUERY = """SELECT range AS n, CASE WHEN range % 7 = 0 THEN NULL ELSE 'lab, "' || range || '" 원' END AS label,
                  TIMESTAMPTZ '2024-01-31 23:30:00+00' + to_days(range::INTEGER) AS at, (range / 4)::DECIMAL(10, 2) AS price
           FROM range(991) ORDER BY n"""


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "warehouse.duckdb"
    con = connect(path)
    try:
        con.execute("CREATE TABLE main.numbers AS SELECT range AS n FROM range(3)")
        publish_replica(con, path)
    finally:
        con.close()
    return path


def pwh(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pwh.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def expected_rows() -> list[tuple]:
    return duckdb.sql(QUERY.replace("TIMESTAMPTZ '2024-01-31 23:30:00+00'", "TIMESTAMP '2024-01-31 23:30:00'")).fetchall()


def test_command_prints_every_row_by_default_and_limit_caps_them(db):
    done = pwh("sql", "--db", str(db), "-c", "SELECT range AS n FROM range(991)")
    assert done.returncode == 0, done.stderr
    numbers = [int(cell) for line in done.stdout.splitlines() if (cell := line.strip("│ ")).isdigit()]
    assert numbers == list(range(991)), "every row, none elided"
    assert "shown" not in done.stdout
    capped = pwh("sql", "--db", str(db), "-c", "SELECT range AS n FROM range(991)", "--limit", "5")
    assert capped.returncode == 0, capped.stderr
    assert [int(c) for line in capped.stdout.splitlines() if (c := line.strip("│ ")).isdigit()] == [0, 1, 2, 3, 4]


def test_csv_and_json_to_stdout_keep_every_value(db):
    rows = expected_rows()
    done = pwh("sql", "--db", str(db), "-c", QUERY, "--format", "csv")
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(done.stdout)))
    assert table[0] == ["n", "label", "at", "price"]
    assert [(int(n), label or None, price) for n, label, _, price in table[1:]] == [
        (n, label, f"{price:.2f}") for n, label, _, price in rows]
    assert table[1 + 8][1] == 'lab, "8" 원'  # quoted as CSV quotes, not mangled

    done = pwh("sql", "--db", str(db), "-c", QUERY, "--format", "json", "--limit", "10")
    assert done.returncode == 0, done.stderr
    objects = json.loads(done.stdout)
    assert [o["n"] for o in objects] == list(range(10))
    assert objects[0]["label"] is None and objects[1]["label"] == 'lab, "1" 원'
    assert objects[1]["at"] == "2024-02-01T23:30:00+00:00" and objects[1]["price"] == "0.25"


def test_files_are_owner_only_even_under_umask_000_and_parquet_needs_a_file(db, tmp_path):
    refused = pwh("sql", "--db", str(db), "-c", QUERY, "--format", "parquet")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == "pwh: error: --format parquet writes a binary file: add --output FILE"

    parquet = tmp_path / "out.parquet"
    done = pwh("sql", "--db", str(db), "-c", QUERY, "--format", "parquet", "--output", str(parquet), umask=0)
    assert done.returncode == 0, done.stderr
    assert parquet.stat().st_mode & 0o777 == 0o600
    assert pq.read_table(parquet).column("n").to_pylist() == list(range(991))
    assert done.stdout == "" and str(parquet) in done.stderr

    existing = tmp_path / "out.csv"
    existing.write_text("old\n")
    existing.chmod(0o666)
    done = pwh("sql", "--db", str(db), "-c", "SELECT 1 AS one", "--format", "csv", "--output", str(existing), umask=0)
    assert done.returncode == 0, done.stderr
    assert existing.read_bytes() == b"one\r\n1\r\n" and existing.stat().st_mode & 0o777 == 0o600

    # A failing query leaves an existing file as it was, and no temporary file behind.
    failed = pwh("sql", "--db", str(db), "-c", "SELECT error('boom')", "--format", "csv", "--output", str(existing))
    assert failed.returncode == 1 and "boom" in failed.stderr and len(failed.stderr.splitlines()) == 1
    assert existing.read_bytes() == b"one\r\n1\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet"]


def test_version_and_the_choices_in_help():
    done = pwh("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"pwh {version('project-warehouse')}"
    helped = pwh("sql", "--help")
    assert helped.returncode == 0 and "table|csv|json|parquet" in helped.stdout
    misused = pwh("sql", "--format", "xml")
    assert misused.returncode == 2 and "xml" in misused.stderr


def test_json_output_is_valid_json_with_nan_and_infinity_as_null(db):
    """JSON has no NaN or infinity: a reader refuses a bare `NaN`, so they are written null
    (nested ones too); finite values stay as they are."""
    query = ("SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, '-inf'::DOUBLE AS c, 1.5::DOUBLE AS d, "
             "['nan'::DOUBLE, 2.0] AS e, {'x': 'inf'::DOUBLE} AS f")
    done = pwh("sql", "--db", str(db), "-c", query, "--format", "json")
    assert done.returncode == 0, done.stderr
    strict = json.loads(done.stdout, parse_constant=lambda name: pytest.fail(f"bare {name} in the output"))
    assert strict == [{"a": None, "b": None, "c": None, "d": 1.5, "e": [None, 2.0], "f": {"x": None}}]
