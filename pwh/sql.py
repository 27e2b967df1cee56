"""``pwh sql``: SQL on the readers' replica, read-only, one query (``-c``) or a prompt.

A small prompt of our own rather than the ``duckdb`` CLI: the only CLI wheel on PyPI
(``duckdb-cli``) is a different DuckDB (1.5.x) than the pipeline's, an extra binary to
keep in step, and would open whatever path it is given read-write unless told otherwise.
This one is always read-only, always on the replica, and reconnects when a newer replica
has been published, so every statement sees the latest sync.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from contextlib import contextmanager, redirect_stdout
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Iterator

import duckdb

from pwh.errors import PwhError
from pwh.formats import Format
from pwh.warehouse.replica import open_replica, replica_path

HELP = """Statements end with `;` (a blank line also runs what you typed). Read-only.
  .tables           every table and view, with its comment
  .describe T       the columns of T with their comments
  .help             this text        .quit / Ctrl-D   leave"""

TABLES_SQL = """
SELECT schema_name || '.' || table_name AS name, 'table' AS kind, comment FROM duckdb_tables()
WHERE database_name = current_database()
UNION ALL
SELECT schema_name || '.' || view_name, 'view', comment FROM duckdb_views()
WHERE database_name = current_database() AND NOT internal
ORDER BY name"""

DESCRIBE_SQL = """
SELECT column_name AS "column", data_type AS type, comment FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name || '.' || table_name = ?
ORDER BY column_index"""


class ReplicaSession:
    """One read-only connection, renewed when the replica file has been replaced."""

    def __init__(self, db: Path | str) -> None:
        self.db = db
        self.path = Path(db) if str(db).endswith(".replica.duckdb") else replica_path(db)
        self.con: duckdb.DuckDBPyConnection | None = None
        self.inode: int | None = None

    def connection(self) -> duckdb.DuckDBPyConnection:
        inode = os.stat(self.path).st_ino if self.path.exists() else None
        if self.con is None or inode != self.inode:
            if self.con is not None:
                self.con.close()
            self.con = open_replica(self.db)
            self.inode = inode
        return self.con

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def show(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None, out=sys.stdout) -> None:
    if params:
        relation = con.sql(sql, params=params)
    else:
        relation = con.sql(sql)
    if relation is not None:  # None: a statement without a result
        out.write(f"{relation}\n")


class UsageError(PwhError, ValueError):
    """A combination of options that cannot work; the message says what to change."""


BATCH_ROWS = 10_000  # rows fetched at a time: any result size streams in bounded memory


@contextmanager
def private_output(path: Path, *, binary: bool) -> Iterator[IO[Any]]:
    """A file only its owner can read (0600, whatever the umask, also when it existed
    before: results can hold anything the warehouse holds). Written beside the target
    and renamed onto it when complete, so a failed query leaves an existing file as it was."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask; be exact
        out: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN and infinity (nested ones too) as None: JSON has no such
    numbers, and a reader of the file would refuse bare ``NaN``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)  # Decimal (exact, as text), UUID, intervals, blobs' repr


def _rows(relation: duckdb.DuckDBPyRelation) -> Iterator[tuple]:
    for batch in relation.to_arrow_reader(BATCH_ROWS):
        yield from zip(*(column.to_pylist() for column in batch.columns))


def write_result(relation: duckdb.DuckDBPyRelation, fmt: Format, out: IO[Any]) -> None:
    if fmt is Format.table:
        # Every row, every column at full width: the caller caps rows with --limit. DuckDB's
        # box rendering prints to sys.stdout.
        with redirect_stdout(out):
            relation.show(max_rows=sys.maxsize, max_width=sys.maxsize if not out.isatty() else None)
    elif fmt is Format.csv:
        writer = csv.writer(out)
        writer.writerow(relation.columns)
        writer.writerows(_rows(relation))
    elif fmt is Format.json:  # one array of objects, written as the rows come
        out.write("[")
        for i, row in enumerate(_rows(relation)):
            out.write(("\n" if i == 0 else ",\n")
                      + json.dumps(_json_safe(dict(zip(relation.columns, row))), ensure_ascii=False,
                                   default=_json_value, allow_nan=False))
        out.write("\n]\n")
    else:
        import pyarrow.parquet as pq

        reader = relation.to_arrow_reader(BATCH_ROWS)
        with pq.ParquetWriter(out, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)


def run_one(db: Path | str, sql: str, *, fmt: Format = Format.table, limit: int | None = None,
            output: Path | None = None) -> int | None:
    """Run one statement and write all its rows (or the first ``limit``) as ``fmt`` to
    stdout or ``output``; returns the bytes written to ``output``."""
    if fmt is Format.parquet and output is None:
        raise UsageError("--format parquet writes a binary file: add --output FILE")
    session = ReplicaSession(db)
    try:
        relation = session.connection().sql(sql)
        if relation is None:  # a statement without a result
            return None
        if limit is not None:
            relation = relation.limit(limit)
        if output is None:
            write_result(relation, fmt, sys.stdout)
            return None
        with private_output(output, binary=fmt is Format.parquet) as out:
            write_result(relation, fmt, out)
        return output.stat().st_size
    finally:
        session.close()


def meta_command(session: ReplicaSession, line: str) -> bool:
    """Run a dot command; False to leave."""
    word, _, argument = line.partition(" ")
    if word in (".quit", ".exit"):
        return False
    if word == ".help":
        print(HELP)
    elif word == ".tables":
        show(session.connection(), TABLES_SQL)
    elif word == ".describe" and argument.strip():
        name = argument.strip().rstrip(";")
        show(session.connection(), DESCRIBE_SQL, [name if "." in name else f"main.{name}"])
    else:
        print(f"unknown command {line!r}; .help lists them")
    return True


def repl(db: Path | str, stdin=sys.stdin) -> None:
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    session = ReplicaSession(db)
    session.connection()  # fail early and clearly when there is no replica
    if interactive:
        print(f"pwh sql: read-only on {session.path} (refreshed after each sync). .help for help.")
    buffer: list[str] = []
    try:
        while True:
            try:
                line = input("pwh> " if not buffer else "...> ") if interactive else stdin.readline()
            except EOFError:
                line = None
            except KeyboardInterrupt:  # Ctrl-C drops the statement being typed
                print()
                buffer = []
                continue
            if line is None or (not interactive and line == ""):
                if buffer:
                    _run(session, "\n".join(buffer))
                break
            line = line.rstrip("\n")
            if not buffer and line.strip().startswith("."):
                if not meta_command(session, line.strip()):
                    break
                continue
            if line.strip() == "" and buffer:
                _run(session, "\n".join(buffer))
                buffer = []
                continue
            if line.strip():
                buffer.append(line)
            if line.rstrip().endswith(";"):
                _run(session, "\n".join(buffer))
                buffer = []
    finally:
        session.close()


def _run(session: ReplicaSession, sql: str) -> None:
    try:
        show(session.connection(), sql)
    except duckdb.Error as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
