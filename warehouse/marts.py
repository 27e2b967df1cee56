"""The analysts' marts: cross-source views in the ``analytics`` schema.

Each view is declared once, here, as a :class:`View`: its documented columns (the same
:class:`~schemas.spec.Column` specs the tables use, so the README reference, ``pwh docs``
and the warehouse's ``COMMENT ON`` all come from this one place) and one SQL *part* per
source that feeds it. A part names the tables it reads; the view is built from the parts
whose tables exist in the file, so a source whose tables are not there (yet) is simply
absent, and a source whose tables are empty contributes no rows. With no part at all the
view still exists, typed and empty.

Views, not tables: they are always exactly as fresh as the tables under them, cost nothing
to keep, and are re-created (``CREATE OR REPLACE VIEW``) after every sync so a new version
of pwh brings its new marts with the next run.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from schemas.spec import Column, boolean, date, integer, number, text, timestamp

SCHEMA = "analytics"
SCHEMA_DOC = "Cross-source marts for analysts and dashboards: views over the source tables, one row per documented grain."


@dataclass(frozen=True)
class Part:
    """One source's contribution to a view: a SELECT giving (a subset of) the view's
    inner columns by name, and the tables it reads."""

    source: str
    reads: tuple[str, ...]
    sql: str


@dataclass(frozen=True)
class View:
    name: str
    doc: str
    grain: str  # what one row is
    columns: tuple[Column, ...]
    parts: tuple[Part, ...]
    # The parts are stacked (UNION ALL BY NAME; a column a part lacks is NULL) into a
    # relation ``parts`` with these columns (default: the view's own), which ``select``
    # shapes into the view's columns.
    inner: tuple[Column, ...] = ()
    select: str = "SELECT * FROM parts"

    @property
    def schema(self) -> str:
        return SCHEMA

    @property
    def qualified_name(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def inner_columns(self) -> tuple[Column, ...]:
        return self.inner or self.columns

    def sources(self, present: set[str] | None = None) -> list[str]:
        return [p.source for p in self._parts(present)]

    def _parts(self, present: set[str] | None) -> list[Part]:
        return [p for p in self.parts if present is None or all(t in present for t in p.reads)]

    def sql(self, present: set[str] | None = None) -> str:
        """The view's SELECT over the parts whose tables are all in ``present`` (None: all).
        An empty typed relation heads the stack, so every inner column exists with its
        type even when no part (or no part giving that column) is there."""
        template = "SELECT " + ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in self.inner_columns) + " WHERE false"
        stacked = "\n  UNION ALL BY NAME\n".join(
            [template, *(f"SELECT * FROM (\n{p.sql.strip()}\n)" for p in self._parts(present))]
        )
        names = ", ".join(c.name for c in self.inner_columns)
        # The view's columns carry exactly their documented types (sums would be HUGEINT).
        outer = ", ".join(f"CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in self.columns)
        return (
            f"WITH parts AS (\nSELECT {names} FROM (\n{stacked}\n)\n)\n"
            f"SELECT {outer} FROM (\n{self.select.strip()}\n)"
        )


# ----------------------------------------------------------------------------- projects

SOURCE = text("source", "Source system: `rayteams`, `openproject`, `clarity` or `incoplax`.")
ACCOUNT = text("account", "Account (instance, lab) of the source the row was synced from.")

PROJECTS = View(
    "projects",
    "Every project from every source, one row each, in one shape: how many projects there are, across systems, by status, is one query.",
    "one row per project per source account",
    (
        SOURCE,
        ACCOUNT,
        text("source_id", "The project's id in its source (RAYTeams `_id`, OpenProject `id`, Clarity `limsid`, Incoplax `id`), as text."),
        text("name", "Project name as the source shows it."),
        text("project_type", "Kind of project in its source (RAYTeams `projecttype`, OpenProject `Project`/`Program`/`Portfolio`, Clarity user-defined type); NULL where the source has none (Incoplax)."),
        text("status", "The source's own status label (RAYTeams status title, OpenProject project status title, Clarity `Open`/`Closed` from its close date); NULL when the project has none (always for Incoplax)."),
        text("lifecycle", "Status normalised across sources: `deleted` (gone from the source), `trashed` (RAYTeams trash), `archived` (RAYTeams archive, OpenProject archived project), `closed` (Clarity close date set), or `active`."),
        timestamp("created_at", "When the project was created in the source (UTC; Clarity: its open date at midnight UTC)."),
        timestamp("updated_at", "When the project was last changed in the source (UTC; Incoplax last write); NULL where the source does not say (Clarity)."),
        timestamp("deleted_at", "When the pipeline saw the project vanish from its source (UTC); NULL while it exists."),
        boolean("is_deleted", "True when `deleted_at` is set: filter on `NOT is_deleted` for current projects."),
        integer("size_bytes", "Total size of the project's files in bytes where the source knows it (RAYTeams `size`); NULL elsewhere."),
    ),
    (
        Part("rayteams", ("rayteams.projects",), """
SELECT 'rayteams' AS source, account, project_id AS source_id, name, project_type,
       status_text AS status,
       CASE WHEN deleted_at IS NOT NULL THEN 'deleted' WHEN is_trash THEN 'trashed'
            WHEN is_archive THEN 'archived' ELSE 'active' END AS lifecycle,
       created_at, updated_at, deleted_at, size_bytes
FROM rayteams.projects"""),
        Part("openproject", ("openproject.projects",), """
SELECT 'openproject' AS source, account, project_id AS source_id, name, workspace_type AS project_type,
       status_title AS status,
       CASE WHEN deleted_at IS NOT NULL THEN 'deleted' WHEN active IS false THEN 'archived'
            ELSE 'active' END AS lifecycle,
       created_at, updated_at, deleted_at
FROM openproject.projects"""),
        Part("clarity", ("clarity.projects",), """
SELECT 'clarity' AS source, account, project_limsid AS source_id, name, udt_name AS project_type,
       CASE WHEN close_date IS NOT NULL THEN 'Closed' ELSE 'Open' END AS status,
       CASE WHEN deleted_at IS NOT NULL THEN 'deleted' WHEN close_date IS NOT NULL THEN 'closed'
            ELSE 'active' END AS lifecycle,
       timezone('UTC', open_date::TIMESTAMP) AS created_at, deleted_at
FROM clarity.projects"""),
        Part("incoplax", ("incoplax.projects",), """
SELECT 'incoplax' AS source, account, project_id AS source_id, name,
       CASE WHEN deleted_at IS NOT NULL THEN 'deleted' ELSE 'active' END AS lifecycle,
       created_at, last_write_at AS updated_at, deleted_at
FROM incoplax.projects"""),
    ),
    select="SELECT * EXCLUDE (is_deleted), deleted_at IS NOT NULL AS is_deleted FROM parts",
)

# ------------------------------------------------------------------------ activity_daily

ACTIVITY_DAILY = View(
    "activity_daily",
    "Activity per UTC day, source, account and group: memos, memo comments and history entries (RAYTeams) and work packages created (OpenProject). Rows of projects since deleted are counted: the activity happened.",
    "one row per day, source, account and group with any activity",
    (
        date("day", "UTC calendar day the records were created."),
        SOURCE,
        ACCOUNT,
        text("group_id", "The group the activity belongs to: for RAYTeams memos and comments the author's group, for histories the project's owner group; NULL for sources without groups (OpenProject)."),
        integer("memos", "RAYTeams memos written that day."),
        integer("comments", "RAYTeams memo comments written that day."),
        integer("histories", "RAYTeams history entries (changes) recorded that day."),
        integer("work_packages", "OpenProject work packages created that day."),
        integer("events", "All of the above together."),
    ),
    (
        Part("rayteams", ("rayteams.memos", "rayteams.memo_comments", "rayteams.histories", "rayteams.projects"), """
SELECT 'rayteams' AS source, account, group_id, created_at, 'memo' AS kind FROM rayteams.memos
UNION ALL
SELECT 'rayteams', account, group_id, created_at, 'comment' FROM rayteams.memo_comments
UNION ALL
SELECT 'rayteams', h.account, p.owner_group_id, h.created_at, 'history'
FROM rayteams.histories h LEFT JOIN rayteams.projects p USING (account, project_id)"""),
        Part("openproject", ("openproject.work_packages",), """
SELECT 'openproject' AS source, account, NULL AS group_id, created_at, 'work_package' AS kind
FROM openproject.work_packages"""),
    ),
    inner=(SOURCE, ACCOUNT, text("group_id", "group"), timestamp("created_at", "when"), text("kind", "what")),
    select="""
SELECT (created_at AT TIME ZONE 'UTC')::DATE AS day, source, account, group_id,
       count_if(kind = 'memo') AS memos, count_if(kind = 'comment') AS comments,
       count_if(kind = 'history') AS histories, count_if(kind = 'work_package') AS work_packages,
       count(*) AS events
FROM parts WHERE created_at IS NOT NULL
GROUP BY ALL""",
)

# ---------------------------------------------------------------------- storage_by_group

STORAGE_BY_GROUP = View(
    "storage_by_group",
    "RAYTeams storage per owner group and lab: the projects' downloadable files and attachments, in bytes. Current projects only (projects gone from RAYTeams are left out; trashed ones still count, they still hold their files).",
    "one row per account, owner group and lab",
    (
        ACCOUNT,
        text("owner_group_id", "Group id that owns the projects (`rayteams.projects.owner_group_id`)."),
        text("lab_id", "Group id of the lab the projects are shared with."),
        integer("projects", "Current projects of this owner group and lab."),
        integer("files", "Downloadable project files (`rayteams.files`)."),
        integer("file_bytes", "Their total size in bytes."),
        integer("attachments", "Attachments (`rayteams.attachments`)."),
        integer("attachment_bytes", "Their total size in bytes."),
        integer("total_bytes", "`file_bytes + attachment_bytes`."),
    ),
    (
        Part("rayteams", ("rayteams.projects", "rayteams.files", "rayteams.attachments"), """
WITH current_projects AS (
  SELECT account, project_id, owner_group_id, lab_id FROM rayteams.projects WHERE deleted_at IS NULL
), f AS (
  SELECT account, project_id, count(*) AS files, sum(size_bytes) AS file_bytes FROM rayteams.files GROUP BY ALL
), a AS (
  SELECT account, project_id, count(*) AS attachments, sum(size_bytes) AS attachment_bytes FROM rayteams.attachments GROUP BY ALL
)
SELECT p.account, p.owner_group_id, p.lab_id, count(*) AS projects,
       coalesce(sum(f.files), 0) AS files, coalesce(sum(f.file_bytes), 0) AS file_bytes,
       coalesce(sum(a.attachments), 0) AS attachments, coalesce(sum(a.attachment_bytes), 0) AS attachment_bytes
FROM current_projects p
LEFT JOIN f USING (account, project_id)
LEFT JOIN a USING (account, project_id)
GROUP BY ALL"""),
    ),
    select="SELECT * EXCLUDE (total_bytes), file_bytes + attachment_bytes AS total_bytes FROM parts",
)

# ------------------------------------------------------------------------- orders_funnel

ORDERS_FUNNEL = View(
    "orders_funnel",
    "RAYTeams orders by workflow stage and product, with their value: the order funnel. Orders of current projects only.",
    "one row per account, status type, product and currency",
    (
        ACCOUNT,
        integer("stage", "Position of the status type in the funnel: 1 `NEW`, 2 `INPROGRESS`, 3 `CLOSED`, 9 anything else."),
        text("status_type", "`NEW`, `INPROGRESS` or `CLOSED` (`statusType`); `(none)` when the order has none."),
        text("product_name", "Product ordered; `(none)` when the order names none."),
        text("currency", "Currency of the prices (`product.currency` as sent: `원`, `KRW`, `USD`…); `(none)` when unset."),
        integer("orders", "Orders in this stage for this product."),
        integer("projects", "Distinct projects those orders belong to."),
        number("value", "Sum of the orders' `product_price`, in `currency`; NULL when no order has a price."),
    ),
    (
        Part("rayteams", ("rayteams.orders", "rayteams.projects"), """
SELECT o.account,
       CASE o.status_type WHEN 'NEW' THEN 1 WHEN 'INPROGRESS' THEN 2 WHEN 'CLOSED' THEN 3 ELSE 9 END AS stage,
       coalesce(o.status_type, '(none)') AS status_type,
       coalesce(o.product_name, '(none)') AS product_name,
       coalesce(o.product_currency, '(none)') AS currency,
       count(*) AS orders, count(DISTINCT o.project_id) AS projects, sum(o.product_price) AS value
FROM rayteams.orders o JOIN rayteams.projects p USING (account, project_id)
WHERE p.deleted_at IS NULL
GROUP BY ALL"""),
    ),
)

VIEWS: tuple[View, ...] = (PROJECTS, ACTIVITY_DAILY, STORAGE_BY_GROUP, ORDERS_FUNNEL)


def present_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        f"{schema}.{table}"
        for schema, table in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    }


def create_views(con: duckdb.DuckDBPyConnection, views: tuple[View, ...] = VIEWS) -> dict[str, list[str]]:
    """(Re)create every mart from the parts whose tables are present; returns the sources
    each view covers. The caller owns the transaction."""
    present = present_tables(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    covered = {}
    for view in views:
        con.execute(f"CREATE OR REPLACE VIEW {view.qualified_name} AS\n{view.sql(present)}")
        covered[view.name] = view.sources(present)
    return covered
