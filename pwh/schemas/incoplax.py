"""The Incoplax table: one row per project of a domain (`/rest/v1/domain/projects`)."""

from __future__ import annotations

from pwh.schemas.spec import Table, json_text, text, timestamp

SCHEMA = "incoplax"

PROJECTS = Table(
    SCHEMA, "projects",
    "One row per Incoplax project of a domain (`GET /rest/v1/domain/projects/{id}`); a project "
    "deleted upstream stays, with `deleted_at` set.",
    (
        text("account", "Name of the Incoplax instance (domain) the row was synced from.", nullable=False),
        text("project_id", "Incoplax project id (`id`, a UUID); cannot change.", nullable=False),
        text("code", "Project code (`code`), a key field of `LOOKUP`; numeric-looking codes are kept as text."),
        text("name", "Project name (`name`)."),
        text("title", "Project title (`opts.title`); empty text when the project has an empty title, NULL when it has no `opts`."),
        text("comment", "Free-text comment (`opts.comment`); empty text when empty, NULL when the project has no `opts`."),
        timestamp("created_at", "When the project was created (`ext.ct`, UTC, 10 ms precision)."),
        timestamp("last_write_at", "When the project was last written (`ext.lwt`, UTC, 10 ms precision); the incremental cursor."),
        json_text("extra", "Fields of the project this table does not model (other `opts`/`ext` members, new top-level fields), as JSON; NULL when none."),
        timestamp("deleted_at", "When the pipeline saw the project vanish from the API (UTC); NULL while it exists."),
    ),
    key=("account", "project_id"),
    managed=("deleted_at",),
)

TABLES: tuple[Table, ...] = (PROJECTS,)
