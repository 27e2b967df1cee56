"""The analysts' marts: cross-source views in the ``analytics`` schema.

Each view is declared once, here, as a :class:`View`: its documented columns (the same
:class:`~pwh.schemas.spec.Column` specs the tables use, so the table reference (docs/tables.md), ``pwh docs``
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

from pwh.schemas.spec import Column, boolean, date, integer, number, text, timestamp

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
    # A view with a threshold: ``select`` names it as ``{name}``; the view uses the
    # default, and a table macro ``analytics.<macro>(name)`` takes any value.
    parameter: tuple[str, int] | None = None
    macro: str | None = None

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

    @property
    def qualified_macro(self) -> str | None:
        return f"{SCHEMA}.{self.macro}" if self.macro else None

    @property
    def macro_doc(self) -> str | None:
        if not self.macro or self.parameter is None:
            return None
        name, default = self.parameter
        return (f"`{self.qualified_name}` for any `{name}` (the view uses {default}): "
                f"`SELECT * FROM {self.qualified_macro}(N)`, same columns.")

    def macro_sql(self, present: set[str] | None = None) -> str:
        """The body of the view's table macro: its SELECT with the parameter left free."""
        assert self.parameter is not None and self.macro is not None, self.name
        return self.sql(present, parameter_value=self.parameter[0])

    def sql(self, present: set[str] | None = None, *, parameter_value: str | None = None) -> str:
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
        select = self.select.strip()
        if self.parameter is not None:
            name, default = self.parameter
            select = select.format(**{name: parameter_value or str(int(default))})
        return (
            f"WITH parts AS (\nSELECT {names} FROM (\n{stacked}\n)\n)\n"
            f"SELECT {outer} FROM (\n{select}\n)"
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

# -------------------------------------------------------------------------- currencies

# Currency marks as RAYTeams products send them (`product.currency` is free text: the
# simulator and the API notes show `원` next to `KRW`) → ISO 4217. Only marks that name one
# currency: `¥`/`￥` is the yen and the yuan alike, so it is kept as sent.
CURRENCY_MARKS = {"원": "KRW", "₩": "KRW", "￦": "KRW", "$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "円": "JPY"}


def currency_sql(expr: str) -> str:
    """SQL normalising the currency in ``expr``: trimmed; a known mark → its ISO code;
    three ASCII letters in any case → upper case (`krw`, `KRW ` → `KRW`); anything else
    kept as sent (trimmed); NULL or blank → `(none)`."""
    marks = " ".join(f"WHEN '{mark}' THEN '{code}'" for mark, code in CURRENCY_MARKS.items())
    trimmed = f"trim({expr})"
    return (f"CASE WHEN {expr} IS NULL OR {trimmed} = '' THEN '(none)' "
            f"ELSE CASE {trimmed} {marks} "
            f"ELSE CASE WHEN regexp_full_match({trimmed}, '[A-Za-z]{{3}}') THEN upper({trimmed}) ELSE {trimmed} END END END")


CURRENCY_DOC = ("Currency of the prices, normalised: `원`, `₩`, `￦` and `krw`/`KRW ` → `KRW`, `$`/`US$` → `USD`, "
                "`€` → `EUR`, `£` → `GBP`, `円` → `JPY`, other three-letter codes upper-cased; `¥` (yen or yuan) and "
                "unknown marks as sent; `(none)` when unset.")


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
        text("currency", CURRENCY_DOC),
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
       """ + currency_sql("o.product_currency") + """ AS currency,
       count(*) AS orders, count(DISTINCT o.project_id) AS projects, sum(o.product_price) AS value
FROM rayteams.orders o JOIN rayteams.projects p USING (account, project_id)
WHERE p.deleted_at IS NULL
GROUP BY ALL"""),
    ),
)

# ------------------------------------------------------------------------ orders_monthly

ORDERS_MONTHLY = View(
    "orders_monthly",
    "RAYTeams orders and their value per month of creation, lab, product and currency: orders over time. Orders of current projects only (as in `orders_funnel`).",
    "one row per UTC month, account, lab, product and currency with any order",
    (
        date("month", "First day of the UTC month the orders were created in (`created`)."),
        ACCOUNT,
        text("lab_id", "Group id of the lab taking the orders (the order's `labId`); `(none)` when unset."),
        text("product_name", "Product ordered; `(none)` when the order names none."),
        text("currency", CURRENCY_DOC),
        integer("orders", "Orders created that month."),
        integer("closed_orders", "Of those, orders whose `statusType` is now `CLOSED` (delivered or cancelled: the type does not tell)."),
        number("value", "Sum of the orders' `product_price`, in `currency`; NULL when no order has a price."),
    ),
    (
        Part("rayteams", ("rayteams.orders", "rayteams.projects"), """
SELECT date_trunc('month', o.created_at AT TIME ZONE 'UTC')::DATE AS month, o.account,
       coalesce(o.lab_id, '(none)') AS lab_id,
       coalesce(o.product_name, '(none)') AS product_name,
       """ + currency_sql("o.product_currency") + """ AS currency,
       count(*) AS orders, count(*) FILTER (o.status_type = 'CLOSED') AS closed_orders,
       sum(o.product_price) AS value
FROM rayteams.orders o JOIN rayteams.projects p USING (account, project_id)
WHERE p.deleted_at IS NULL AND o.created_at IS NOT NULL
GROUP BY ALL"""),
    ),
)

# ------------------------------------------------------------- case_turnaround, stalled

# A RAYTeams project is a patient case. It is *done* at the earlier of
#  - its first closed order: an order whose `statusType` is `CLOSED`, at that order's
#    `updated` (the API keeps no closing time; the status change is an update, so this is
#    the closing time unless the order was edited again after it), and
#  - its completed status: the project's `status.text` is `Completed` (trimmed, any case),
#    at the project's `updated` (same caveat).
# Cases gone from RAYTeams (`deleted_at`) or in its trash are not cases any more.
CASES_SQL = """
WITH cases AS (
  SELECT p.account, p.project_id, coalesce(p.lab_id, '(none)') AS lab_id, p.name, p.status_text,
         coalesce(p.is_archive, false) AS is_archive, p.created_at, p.updated_at,
         (SELECT min(o.updated_at) FROM rayteams.orders o
          WHERE o.account = p.account AND o.project_id = p.project_id AND o.status_type = 'CLOSED') AS closed_at,
         CASE WHEN lower(trim(p.status_text)) = 'completed' THEN p.updated_at END AS completed_at
  FROM rayteams.projects p
  WHERE p.deleted_at IS NULL AND NOT coalesce(p.is_trash, false)
)
SELECT *, least(closed_at, completed_at) AS done_at FROM cases"""

CASE_TURNAROUND = View(
    "case_turnaround",
    "RAYTeams case turnaround per lab: how many cases, how many are done, and the median and 90th percentile of the days from a case's creation to its first closed order or its `Completed` status, whichever came first. Cases gone from RAYTeams or in its trash are left out; archived ones count.",
    "one row per account and lab",
    (
        ACCOUNT,
        text("lab_id", "Group id of the lab the cases are shared with (`rayteams.projects.lab_id`); `(none)` when unset."),
        integer("cases", "Cases (projects) of this lab."),
        integer("done_cases", "Cases with a closed order (`statusType` `CLOSED`, at the order's last update) or the status `Completed` (at the project's last update)."),
        integer("open_cases", "`cases - done_cases`."),
        number("median_days", "Median of the done cases' days from creation to done (linear interpolation, `quantile_cont`); NULL without a done case."),
        number("p90_days", "90th percentile of the same days (linear interpolation); NULL without a done case."),
    ),
    (
        Part("rayteams", ("rayteams.projects", "rayteams.orders"), """
SELECT account, lab_id, count(*) AS cases, count(done_at) AS done_cases,
       count(*) - count(done_at) AS open_cases,
       quantile_cont(epoch(done_at - created_at) / 86400.0, 0.5) AS median_days,
       quantile_cont(epoch(done_at - created_at) / 86400.0, 0.9) AS p90_days
FROM (""" + CASES_SQL + """)
GROUP BY ALL"""),
    ),
)

STALLED_IDLE_DAYS = 14

STALLED_CASES = View(
    "stalled_cases",
    f"Open RAYTeams cases with no activity for {STALLED_IDLE_DAYS} days or more (as of the query's time). Open: not done (see `case_turnaround`), not archived, not trashed, not gone from RAYTeams. Activity: the latest of the project's update and its memos', comments', attachments', history entries' and orders' times. For another threshold, `SELECT * FROM analytics.stalled_cases_for(N)`.",
    "one row per stalled case",
    (
        ACCOUNT,
        text("lab_id", "Group id of the lab the case is shared with; `(none)` when unset."),
        text("project_id", "RAYTeams project `_id`."),
        text("name", "Project name."),
        text("status", "The project's status title (`status.text`); NULL when it has none."),
        timestamp("created_at", "When the case was created (UTC)."),
        timestamp("last_activity_at", "Its latest activity (UTC)."),
        integer("idle_days", "Whole days from `last_activity_at` to now."),
        integer("open_orders", "Its orders whose `statusType` is not `CLOSED`."),
    ),
    (
        Part("rayteams", ("rayteams.projects", "rayteams.orders", "rayteams.memos", "rayteams.memo_comments",
                          "rayteams.attachments", "rayteams.histories"), """
WITH events AS (
  SELECT account, project_id, created_at AS event_at FROM rayteams.memos
  UNION ALL SELECT account, project_id, created_at FROM rayteams.memo_comments
  UNION ALL SELECT account, project_id, created_at FROM rayteams.attachments
  UNION ALL SELECT account, project_id, created_at FROM rayteams.histories
  UNION ALL SELECT account, project_id, greatest(created_at, updated_at) FROM rayteams.orders
), latest AS (
  SELECT account, project_id, max(event_at) AS event_at FROM events GROUP BY ALL
), open_orders AS (
  SELECT account, project_id, count(*) AS open_orders FROM rayteams.orders
  WHERE status_type IS DISTINCT FROM 'CLOSED' GROUP BY ALL
), activity AS (
  SELECT c.account, c.lab_id, c.project_id, c.name, c.status_text AS status, c.created_at,
         greatest(c.created_at, c.updated_at, l.event_at) AS last_activity_at, coalesce(oo.open_orders, 0) AS open_orders
  FROM (""" + CASES_SQL + """) c
  LEFT JOIN latest l USING (account, project_id)
  LEFT JOIN open_orders oo USING (account, project_id)
  WHERE c.done_at IS NULL AND NOT c.is_archive
)
SELECT *, floor(epoch(now() - last_activity_at) / 86400)::BIGINT AS idle_days FROM activity"""),
    ),
    select="SELECT * FROM parts WHERE idle_days >= {min_idle_days}",
    parameter=("min_idle_days", STALLED_IDLE_DAYS),
    macro="stalled_cases_for",
)

# A view, not a column of custom_values: a renamed field shows its new name at once, in
# the values of projects no run has fetched since, and the per-project load stays
# independent of the per-instance definitions.
OPENPROJECT_CUSTOM_VALUES = View(
    "openproject_custom_values",
    "OpenProject custom values read by name: `openproject.custom_values` with each field's name and type from `openproject.custom_fields`.",
    "one row per custom value (as `openproject.custom_values`)",
    (
        ACCOUNT,
        text("project_id", "Id of the project the value was fetched through."),
        text("owner_type", "`project` or `work_package`."),
        integer("owner_id", "Id of the project or work package."),
        integer("custom_field_id", "N of `customFieldN` / `customCommentN`."),
        text("custom_field_name", "The field's name (`openproject.custom_fields.name`); NULL while its definition has not been read."),
        text("field_type", "The field's type, e.g. `Integer`, `User`, `[]CustomOption`."),
        text("kind", "`value`, `link` or `comment` (`customCommentN`: a comment on the field's value)."),
        text("value_text", "The value as text (see `openproject.custom_values.value_text`)."),
        text("value", "The value as sent, as JSON text."),
    ),
    (
        Part("openproject", ("openproject.custom_values", "openproject.custom_fields"), """
SELECT v.account, v.project_id, v.owner_type, v.owner_id, v.custom_field_id, f.name AS custom_field_name,
       f.field_type, v.kind, v.value_text, CAST(v.value AS VARCHAR) AS value
FROM openproject.custom_values v
LEFT JOIN openproject.custom_fields f ON f.account = v.account AND f.id = v.custom_field_id"""),
    ),
)

VIEWS: tuple[View, ...] = (PROJECTS, ACTIVITY_DAILY, STORAGE_BY_GROUP, ORDERS_FUNNEL, ORDERS_MONTHLY, CASE_TURNAROUND,
                           STALLED_CASES, OPENPROJECT_CUSTOM_VALUES)


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
        if view.macro:
            assert view.parameter is not None, view.name  # a macro takes the view's parameter
            con.execute(f"CREATE OR REPLACE MACRO {view.qualified_macro}({view.parameter[0]}) AS TABLE\n{view.macro_sql(present)}")
        covered[view.name] = view.sources(present)
    return covered
