"""The analyst layer on a real sync: the marts answer questions computed by hand from the
simulator's own records (not by the marts' SQL), every column carries its comment, the
replica is published beside the primary and `pwh sql` reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.warehouse.catalog import all_tables, all_views
from pwh.warehouse.connection import connect
from pwh.warehouse.marts import VIEWS, create_views
from pwh.warehouse.migrations import migrate
from pwh.warehouse.replica import (
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
    from pwh.flows.prefect_flows import sync_rayteams

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
            currency = {"원": "KRW"}.get(product.get("currency"), product.get("currency"))  # the simulator's marks
            row = expected[(order.get("statusType") or "(none)", product.get("productname") or "(none)", currency or "(none)")]
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


# ------------------------------------------------------------------ hand-made datasets

def _insert(con, table: str, columns: str, rows: list[tuple]) -> None:
    marks = ", ".join("?" for _ in columns.split(","))
    con.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


@pytest.fixture
def hand_warehouse(tmp_path):
    con = connect(tmp_path / "hand.duckdb")
    migrate(con)
    yield con
    con.close()


PROJECT_COLUMNS = "account, project_id, lab_id, name, status_text, is_trash, is_archive, created_at, updated_at, deleted_at"
ORDER_COLUMNS = ("account, project_id, sk, lab_id, status_type, product_name, product_price, product_currency, "
                 "created_at, updated_at")


def test_orders_monthly_case_turnaround_and_currencies_on_a_hand_made_dataset(hand_warehouse):
    con = hand_warehouse
    jan1 = "2024-01-01 00:00+00"
    _insert(con, "rayteams.projects", PROJECT_COLUMNS, [
        # lab L1: done after 4 days (closed order beats the later Completed), 2.5 days
        # (status ' completed ', any case), 35 days (closed order), open, 1 day (archived
        # still counts); trashed and deleted cases are no cases. Lab L2: one open case.
        ("acc", "P1", "L1", "one", "Completed", False, False, jan1, "2024-01-11 00:00+00", None),
        ("acc", "P2", "L1", "two", " completed ", False, False, jan1, "2024-01-03 12:00+00", None),
        ("acc", "P3", "L1", "three", "Design", False, False, jan1, "2024-03-01 00:00+00", None),
        ("acc", "P4", "L1", "four", "Design", False, False, jan1, "2024-03-01 00:00+00", None),
        ("acc", "P5", "L1", "trashed", "Completed", True, False, jan1, "2024-01-02 00:00+00", None),
        ("acc", "P6", "L1", "gone", "Completed", False, False, jan1, "2024-01-02 00:00+00", "2024-02-01 00:00+00"),
        ("acc", "P7", "L1", "archived", "Completed", False, True, jan1, "2024-01-02 00:00+00", None),
        ("acc", "P8", "L2", "eight", None, False, False, "2024-02-01 00:00+00", "2024-02-02 00:00+00", None),
    ])
    _insert(con, "rayteams.orders", ORDER_COLUMNS, [
        ("acc", "P1", "order:1", "L1", "CLOSED", "Crown", 100.0, "원", "2024-01-02 00:00+00", "2024-01-05 00:00+00"),
        ("acc", "P3", "order:2", "L1", "CLOSED", "Crown", 50.0, "KRW ", "2024-01-31 23:30+00", "2024-02-05 00:00+00"),
        ("acc", "P3", "order:3", "L1", "NEW", "Crown", 70.0, "krw", "2024-02-01 00:30+00", "2024-02-01 00:30+00"),
        ("acc", "P4", "order:4", "L1", "INPROGRESS", "Guide", 10.0, "$", "2024-01-15 00:00+00", "2024-01-15 00:00+00"),
        ("acc", "P4", "order:5", "L1", "INPROGRESS", "Guide", 5.0, "¥", "2024-01-16 00:00+00", "2024-01-16 00:00+00"),
        ("acc", "P4", "order:6", "L1", "NEW", None, None, None, "2024-01-17 00:00+00", "2024-01-17 00:00+00"),
        ("acc", "P4", "order:7", "L1", "NEW", "Guide", 3.0, "₩", "2024-01-18 00:00+00", "2024-01-18 00:00+00"),
        ("acc", "P6", "order:8", "L1", "CLOSED", "Crown", 999.0, "₩", "2024-01-10 00:00+00", "2024-01-10 00:00+00"),
    ])
    refresh_analyst_layer(con)
    assert con.execute("""SELECT month::VARCHAR, lab_id, product_name, currency, orders, closed_orders, value
                          FROM analytics.orders_monthly ORDER BY ALL""").fetchall() == [
        ("2024-01-01", "L1", "(none)", "(none)", 1, 0, None),
        ("2024-01-01", "L1", "Crown", "KRW", 2, 2, 150.0),  # 원 and 'KRW ' are one currency; 23:30 UTC is January
        ("2024-01-01", "L1", "Guide", "KRW", 1, 0, 3.0),
        ("2024-01-01", "L1", "Guide", "USD", 1, 0, 10.0),
        ("2024-01-01", "L1", "Guide", "¥", 1, 0, 5.0),  # yen or yuan: kept as sent
        ("2024-02-01", "L1", "Crown", "KRW", 1, 0, 70.0)]  # the deleted case's order is not counted
    assert con.execute("""SELECT status_type, product_name, currency, orders, value FROM analytics.orders_funnel
                          ORDER BY ALL""").fetchall() == [
        ("CLOSED", "Crown", "KRW", 2, 150.0), ("INPROGRESS", "Guide", "USD", 1, 10.0),
        ("INPROGRESS", "Guide", "¥", 1, 5.0), ("NEW", "(none)", "(none)", 1, None),
        ("NEW", "Crown", "KRW", 1, 70.0), ("NEW", "Guide", "KRW", 1, 3.0)]
    # L1's done cases took 4, 2.5, 35 and 1 days: median (2.5 + 4) / 2; p90 at rank
    # 0.9 * 3 = 2.7 between 4 and 35: 4 + 0.7 * 31.
    rows = con.execute("""SELECT lab_id, cases, done_cases, open_cases, median_days, p90_days
                          FROM analytics.case_turnaround ORDER BY lab_id""").fetchall()
    assert rows == [("L1", 5, 4, 1, 3.25, pytest.approx(25.7)), ("L2", 1, 0, 1, None, None)]


def test_stalled_cases_view_and_macro_on_a_hand_made_dataset(hand_warehouse):
    con = hand_warehouse
    now = datetime.now(timezone.utc)

    def ago(days: float) -> datetime:
        return now - timedelta(days=days, hours=1)  # an hour's margin: whole days do not flip mid-test

    _insert(con, "rayteams.projects", PROJECT_COLUMNS, [
        ("acc", "S1", "L1", "memo 20 days ago", "Design", False, False, ago(40), ago(30), None),
        ("acc", "S2", "L1", "comment 3 days ago", None, False, False, ago(40), ago(30), None),
        ("acc", "S3", "L1", "completed", "Completed", False, False, ago(40), ago(40), None),
        ("acc", "S4", "L1", "archived", "Design", False, True, ago(40), ago(40), None),
        ("acc", "S5", "L2", "history 16, attachment 15 days ago", "Scan Done", False, False, ago(40), ago(40), None),
        ("acc", "S6", "L2", "closed order", "Design", False, False, ago(200), ago(200), None),
        ("acc", "S7", "L2", "gone", "Design", False, False, ago(200), ago(200), ago(100)),
        ("acc", "S8", "L2", "trashed", "Design", True, False, ago(200), ago(200), None),
    ])
    _insert(con, "rayteams.orders", ORDER_COLUMNS, [
        ("acc", "S1", "order:1", "L1", "NEW", "Crown", 1.0, "KRW", ago(35), ago(25)),
        ("acc", "S6", "order:2", "L2", "CLOSED", "Crown", 1.0, "KRW", ago(150), ago(100)),
    ])
    _insert(con, "rayteams.memos", "account, project_id, sk, created_at", [("acc", "S1", "memo:1", ago(20))])
    _insert(con, "rayteams.memo_comments", "account, project_id, memo_sk, position, created_at",
            [("acc", "S2", "memo:9", 0, ago(3))])
    _insert(con, "rayteams.histories", "account, project_id, sk, created_at", [("acc", "S5", "his:1", ago(16))])
    _insert(con, "rayteams.attachments", "account, project_id, sk, created_at", [("acc", "S5", "attachments:1", ago(15))])
    refresh_analyst_layer(con)
    columns = "project_id, lab_id, idle_days, open_orders"
    assert con.execute(f"SELECT {columns} FROM analytics.stalled_cases ORDER BY project_id").fetchall() == [
        ("S1", "L1", 20, 1), ("S5", "L2", 15, 0)]
    assert con.execute(f"SELECT {columns} FROM analytics.stalled_cases_for(2) ORDER BY project_id").fetchall() == [
        ("S1", "L1", 20, 1), ("S2", "L1", 3, 0), ("S5", "L2", 15, 0)]
    assert con.execute("SELECT project_id FROM analytics.stalled_cases_for(16)").fetchall() == [("S1",)]
    [(last,)] = con.execute("SELECT last_activity_at FROM analytics.stalled_cases WHERE project_id = 'S1'").fetchall()
    assert last == ago(20)
    [(comment,)] = con.execute("""SELECT comment FROM duckdb_functions()
                                  WHERE schema_name = 'analytics' AND function_name = 'stalled_cases_for'""").fetchall()
    assert "min_idle_days" in comment and "14" in comment
