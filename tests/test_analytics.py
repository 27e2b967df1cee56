"""The analyst layer on a real sync: the marts answer questions computed by hand from the
simulator's own records (not by the marts' SQL), every column carries its comment, the
replica is published beside the primary and `pwh sql` reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from schemas.catalog import all_tables, all_views
from sources.rayteams.dataset import DatasetConfig, RayteamsDataset
from sources.rayteams.simulator import SimulatorOptions, running_simulator
from warehouse.connection import connect
from warehouse.marts import VIEWS, create_views
from warehouse.migrations import migrate
from warehouse.replica import (
    open_replica,
    publish_replica,
    refresh_analyst_layer,
    replica_path,
)

TOKEN, CLIENT_ID = "tok-analytics-SECRET-91ab", "client-analytics"
ROOT = Path(__file__).resolve().parent.parent


def ms(value) -> int:
    return int(str(value))


def day(value) -> datetime.date:
    return datetime.fromtimestamp(ms(value) / 1000, timezone.utc).date()


def truthy(value) -> bool:
    return value is True or value == "true"


class HandTruth:
    """What each project holds, read from the dataset's records (the API's answers)."""

    def __init__(self, dataset: RayteamsDataset) -> None:
        self.dataset = dataset
        self.invalid = {(pid, sk) for _, pid, sk in dataset.invalid_record_keys}
        self.projects: dict[str, dict] = {}

    def take(self, pids) -> None:
        for pid in pids:
            info = self.dataset.project_info(pid)
            subs = {kind: [r for r in self.dataset.sub_resource(pid, kind) if (pid, r["sk"]) not in self.invalid]
                    for kind in ("memo", "attachments", "histories", "orders")}
            files = (self.dataset.files(pid) or {}).get("files", [])
            self.projects[pid] = {"info": info, "files": files, **subs}


@pytest.fixture(scope="module")
async def synced(tmp_path_factory, prefect_harness):
    """Two syncs of one account: a full one, then an incremental one after 10% of the
    projects vanished and 5% appeared (nothing else changed, so every row is known)."""
    from flows.rayteams import sync_rayteams

    os.environ["RAYTEAMS_TOKEN"], os.environ["RAYTEAMS_CLIENT_ID"] = TOKEN, CLIENT_ID
    db = tmp_path_factory.mktemp("analytics") / "warehouse.duckdb"
    dataset = RayteamsDataset(DatasetConfig(seed=31, n_projects=40, invalid_records=2))
    truth = HandTruth(dataset)
    truth.take(dataset.project_ids())
    options = SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)
    async with running_simulator(dataset, options) as base_url:
        first = await sync_rayteams(base_url=base_url, db_path=str(db), account="lab-a", batch_size=16)
        change = dataset.mutate(seed=1, update_share=0.0, add_share=0.05, remove_share=0.1)
        truth.take(change.added)
        second = await sync_rayteams(base_url=base_url, db_path=str(db), account="lab-a", batch_size=16)
    assert first["status"] == second["status"] == "success"
    assert second["units_deleted"] == len(change.removed) == 4
    return db, truth, set(change.removed)


def query(db: Path, sql: str) -> list[tuple]:
    con = open_replica(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_replica_is_published_beside_the_primary_owner_only(synced):
    db, _, _ = synced
    replica = replica_path(db)
    assert replica.name == "warehouse.replica.duckdb" and replica.parent == db.parent
    assert replica.stat().st_mode & 0o777 == 0o600
    assert query(db, "SELECT count(*) FROM pipeline.runs") == [(2,)]
    assert not list(db.parent.glob(".*.tmp")), "no temporary copy is left behind"


def test_projects_mart_matches_hand_count_by_status_and_lifecycle(synced):
    db, truth, removed = synced
    current = {pid: p["info"] for pid, p in truth.projects.items() if pid not in removed}
    by_status = Counter((info.get("status") or {}).get("text") for info in current.values())
    rows = query(db, "SELECT status, count(*) FROM analytics.projects WHERE source = 'rayteams' AND NOT is_deleted GROUP BY ALL")
    assert dict(rows) == dict(by_status)

    def lifecycle(info: dict) -> str:
        return "trashed" if truthy(info.get("istrash")) else "archived" if truthy(info.get("isarchive")) else "active"

    expected = Counter(lifecycle(info) for info in current.values())
    expected["deleted"] = len(removed)
    rows = query(db, "SELECT lifecycle, count(*) FROM analytics.projects GROUP BY ALL")
    assert dict(rows) == dict(expected)
    [(size, n, deleted)] = query(db, """SELECT sum(size_bytes) FILTER (NOT is_deleted), count(*), count(deleted_at)
                                        FROM analytics.projects WHERE account = 'lab-a'""")
    assert size == sum(ms(info["size"]) for info in current.values())
    assert (n, deleted) == (len(truth.projects), len(removed))
    assert query(db, "SELECT DISTINCT source FROM analytics.projects") == [("rayteams",)]


def test_activity_daily_matches_hand_count_per_day_and_group(synced):
    db, truth, _ = synced
    expected: dict[tuple, Counter] = defaultdict(Counter)
    for p in truth.projects.values():
        owner = p["info"].get("ownerGroupId")
        for memo in p["memo"]:
            expected[(day(memo["created"]), memo.get("groupId"))]["memos"] += 1
            for comment in memo.get("comments") or []:
                expected[(day(comment["created"]), comment.get("groupId"))]["comments"] += 1
        for history in p["histories"]:
            expected[(day(history["created"]), owner)]["histories"] += 1
    rows = query(db, """SELECT day, group_id, memos, comments, histories, work_packages, events
                        FROM analytics.activity_daily WHERE source = 'rayteams' AND account = 'lab-a'""")
    got = {(d, g): Counter({k: v for k, v in zip(("memos", "comments", "histories"), (m, c, h)) if v})
           for d, g, m, c, h, wp, events in rows}
    assert got == dict(expected)
    assert all(events == m + c + h and wp == 0 for _, _, m, c, h, wp, events in rows)


def test_storage_by_group_matches_hand_sums(synced):
    db, truth, removed = synced
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for pid, p in truth.projects.items():
        if pid in removed:
            continue
        row = expected[(p["info"].get("ownerGroupId"), p["info"].get("labId"))]
        row[0] += 1
        row[1] += len(p["files"])
        row[2] += sum(ms(f["size"]) for f in p["files"])
        row[3] += len(p["attachments"])
        row[4] += sum(ms(a["size"]) for a in p["attachments"])
    rows = query(db, """SELECT owner_group_id, lab_id, projects, files, file_bytes, attachments, attachment_bytes, total_bytes
                        FROM analytics.storage_by_group""")
    assert {(o, lab): list(rest[:5]) for o, lab, *rest in rows} == dict(expected)
    assert all(total == fb + ab for *_, fb, _, ab, total in rows)


def test_orders_funnel_matches_hand_totals(synced):
    db, truth, removed = synced
    expected: dict[tuple, list] = defaultdict(lambda: [0, set(), 0.0])
    for pid, p in truth.projects.items():
        if pid in removed:
            continue
        for order in p["orders"]:
            product = order.get("product") or {}
            row = expected[(order.get("statusType") or "(none)", product.get("productname") or "(none)", product.get("currency") or "(none)")]
            row[0] += 1
            row[1].add(pid)
            row[2] += float(product["price"])
    rows = query(db, "SELECT status_type, product_name, currency, orders, projects, value, stage FROM analytics.orders_funnel")
    assert {(s, pr, c): (o, n, v) for s, pr, c, o, n, v, _ in rows} == {
        key: (o, len(pids), pytest.approx(v)) for key, (o, pids, v) in expected.items()
    }
    stages = {s: stage for s, *_, stage in rows}
    assert {stages.get("NEW", 1), stages.get("INPROGRESS", 2), stages.get("CLOSED", 3)} == {1, 2, 3}


def test_every_column_of_every_table_and_view_has_its_comment(synced):
    db, _, _ = synced
    documented = {(o.schema, o.name, c.name): c.doc for o in (*all_tables(), *all_views()) for c in o.columns}
    rows = query(db, """SELECT schema_name, table_name, column_name, comment FROM duckdb_columns()
                        WHERE database_name = current_database() AND schema_name NOT IN ('main', 'information_schema', 'pg_catalog')""")
    missing = [f"{s}.{t}.{c}" for s, t, c, comment in rows if not comment]
    assert not missing, f"columns without a comment: {missing[:10]}"
    assert {(s, t, c): comment for s, t, c, comment in rows} == documented
    objects = query(db, """SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = current_database()
                           UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views()
                           WHERE database_name = current_database() AND NOT internal""")
    assert all(comment for *_, comment in objects) and len(objects) == len(all_tables()) + len(all_views())


def test_views_have_exactly_their_documented_columns_and_types(synced):
    db, _, _ = synced
    for view in VIEWS:
        rows = query(db, f"""SELECT column_name, data_type FROM duckdb_columns()
                             WHERE schema_name = 'analytics' AND table_name = '{view.name}' ORDER BY column_index""")
        spelled = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
        assert rows == [(c.name, spelled.get(c.sql_type, c.sql_type)) for c in view.columns], view.name


def test_pwh_sql_reads_the_replica_and_refuses_writes(synced):
    db, truth, _ = synced
    pwh = [sys.executable, "-m", "pwh.cli"]
    one = subprocess.run([*pwh, "sql", "--db", str(db), "-c", "SELECT count(*) AS n FROM analytics.projects"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert one.returncode == 0, one.stderr
    assert str(len(truth.projects)) in one.stdout
    prompt = subprocess.run([*pwh, "sql", "--db", str(db)], input=".describe analytics.orders_funnel\n"
                            "SELECT 'runs=' || count(*) AS answer\nFROM pipeline.runs;\nDELETE FROM pipeline.runs;\n",
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert prompt.returncode == 0, prompt.stderr
    assert "Position of the status type in the funnel" in prompt.stdout  # the column comment
    assert "runs=2" in prompt.stdout  # a statement over two lines
    assert "read-only" in prompt.stderr.lower()
    assert query(db, "SELECT count(*) FROM pipeline.runs") == [(2,)]


def test_marts_take_in_every_source_and_survive_missing_or_empty_ones(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    try:
        migrate(con)
        con.execute("SET TimeZone = 'UTC'")  # only for reading the timestamps back as text
        covered = refresh_analyst_layer(con)
        assert covered["projects"] == ["rayteams", "openproject", "clarity", "incoplax"]
        assert con.execute("SELECT count(*) FROM analytics.projects").fetchall() == [(0,)]  # empty sources: no rows
        con.execute("""INSERT INTO openproject.projects (account, project_id, workspace_type, name, active, status_title,
                       created_at, updated_at) VALUES
                       ('op', '1', 'Project', 'Alpha', true, 'On track', '2024-03-01 10:00+00', '2024-03-02 10:00+00'),
                       ('op', '2', 'Program', 'Beta', false, NULL, '2024-03-01 23:30+00', '2024-03-05 10:00+00')""")
        con.execute("""INSERT INTO openproject.work_packages (account, project_id, id, subject, created_at) VALUES
                       ('op', '1', 10, 'a', '2024-03-01 10:00+00'), ('op', '1', 11, 'b', '2024-03-01 23:59+00'),
                       ('op', '2', 12, 'c', '2024-03-02 00:01+00')""")
        con.execute("""INSERT INTO clarity.projects (account, project_limsid, name, open_date, close_date, deleted_at) VALUES
                       ('lims', 'ADM1', 'Gamma', '2024-01-02', NULL, NULL), ('lims', 'ADM2', 'Delta', '2024-01-03', '2024-02-01', NULL),
                       ('lims', 'ADM3', 'Eps', '2024-01-04', NULL, '2024-05-01 00:00+00')""")
        con.execute("""INSERT INTO incoplax.projects (account, project_id, name, created_at, last_write_at) VALUES
                       ('dom', 'u-1', 'Zeta', '2024-01-01 05:00+00', '2024-01-09 05:00+00')""")
        assert con.execute("""SELECT source, source_id, name, project_type, status, lifecycle, is_deleted, size_bytes,
                              created_at::VARCHAR FROM analytics.projects ORDER BY source, source_id""").fetchall() == [
            ("clarity", "ADM1", "Gamma", None, "Open", "active", False, None, "2024-01-02 00:00:00+00"),
            ("clarity", "ADM2", "Delta", None, "Closed", "closed", False, None, "2024-01-03 00:00:00+00"),
            ("clarity", "ADM3", "Eps", None, "Open", "deleted", True, None, "2024-01-04 00:00:00+00"),
            ("incoplax", "u-1", "Zeta", None, None, "active", False, None, "2024-01-01 05:00:00+00"),
            ("openproject", "1", "Alpha", "Project", "On track", "active", False, None, "2024-03-01 10:00:00+00"),
            ("openproject", "2", "Beta", "Program", None, "archived", False, None, "2024-03-01 23:30:00+00")]
        # The question of the issue, across systems, in one query.
        assert con.execute("""SELECT lifecycle, count(*) FROM analytics.projects GROUP BY ALL ORDER BY ALL""").fetchall() == [
            ("active", 3), ("archived", 1), ("closed", 1), ("deleted", 1)]
        assert con.execute("""SELECT day::VARCHAR, source, account, group_id, work_packages, events
                              FROM analytics.activity_daily ORDER BY day""").fetchall() == [
            ("2024-03-01", "openproject", "op", None, 2, 2), ("2024-03-02", "openproject", "op", None, 1, 1)]
        # A source whose tables are not in the file is left out; the view stays, typed.
        con.execute("DROP TABLE openproject.work_packages")
        covered = create_views(con)
        assert covered["activity_daily"] == ["rayteams"]
        assert con.execute("SELECT count(*) FROM analytics.activity_daily").fetchall() == [(0,)]
        published = publish_replica(con, tmp_path / "w.duckdb")
    finally:
        con.close()
    assert published.path == tmp_path / "w.replica.duckdb"
    reader = duckdb.connect(str(published.path), read_only=True)
    try:
        assert reader.execute("SELECT count(*) FROM analytics.projects").fetchall() == [(6,)]
    finally:
        reader.close()


def test_pwh_publish_documents_and_publishes_an_existing_warehouse(tmp_path):
    db = tmp_path / "old.duckdb"
    con = connect(db)
    try:
        migrate(con)  # a warehouse written before the analyst layer: no marts, no comments
    finally:
        con.close()
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "publish", "--db", str(db)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "old.replica.duckdb" in done.stdout
    rows = query(db, """SELECT count(*), count(comment) FROM duckdb_columns()
                        WHERE schema_name IN ('pipeline', 'rayteams', 'analytics')""")
    assert rows[0][0] == rows[0][1] > 100
    assert query(db, "SELECT count(*) FROM analytics.orders_funnel") == [(0,)]
