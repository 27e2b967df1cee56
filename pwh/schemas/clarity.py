"""The Clarity LIMS tables: projects, their user-defined fields (typed), files and
external ids. The unit of replacement is the project (its LIMS id)."""

from __future__ import annotations

from pandera.api.checks import Check

from pwh.schemas.spec import (
    Table,
    boolean,
    date,
    integer,
    json_text,
    number,
    text,
    timestamp,
)

SCHEMA = "clarity"

UDF_TYPES = ("String", "Text", "Boolean", "Numeric", "Date", "URI")
SCOPES = ("project", "udt")

ACCOUNT = text("account", "Name of the Clarity LIMS instance (account) the row was synced from.", nullable=False)
PROJECT = text(
    "project_limsid", "LIMS id of the project (`limsid`, e.g. `ADM1`): the unit every row belongs to.",
    nullable=False,
)

PROJECTS = Table(
    SCHEMA, "projects",
    "One row per Clarity LIMS project (`GET /api/v2/projects/{limsid}`).",
    (
        ACCOUNT,
        PROJECT,
        text("uri", "The project's own URI as the server wrote it (`uri` attribute)."),
        text("name", "Project name (`<name>`)."),
        date("open_date", "Date the project was opened (`<open-date>`); NULL when absent."),
        date("close_date", "Date the project was closed (`<close-date>`); NULL while open."),
        date("invoice_date", "Date the project was invoiced (`<invoice-date>`); NULL when absent."),
        text("researcher_uri", "URI of the project's contact researcher (`<researcher uri>`)."),
        text("researcher_id", "Id of the researcher: the last segment of `researcher_uri`."),
        text("udt_name", "Name of the project's user-defined type (`<udf:type name>`); NULL when it has none."),
        text("priority", "Project priority (`<priority>`, e.g. `Standard`); NULL when the server sends none."),
        integer("udf_count", "Number of user-defined fields of the project, the UDT's included.", checks=(Check.ge(0),)),
        integer("file_count", "Number of files attached to the project.", checks=(Check.ge(0),)),
        json_text("extra", "Child elements of the project this table does not model, as JSON "
                           "(`[{tag, attributes, text}]`); NULL when none."),
        timestamp("deleted_at", "When the pipeline saw the project vanish from a complete list (UTC); NULL while it exists."),
    ),
    key=("account", "project_limsid"),
    unit_column="project_limsid",
    managed=("deleted_at",),
)

PROJECT_UDFS = Table(
    SCHEMA, "project_udfs",
    "One row per user-defined field (UDF) of a project, standalone or inside its UDT: the raw "
    "text and, when it parses as the declared type, a typed value. A value that does not parse "
    "keeps its text and says why in `parse_error`.",
    (
        ACCOUNT,
        PROJECT,
        text("scope", "`project` for a standalone UDF, `udt` for a field inside the project's `udf:type`.",
             nullable=False, checks=(Check.isin(SCOPES),)),
        text("name", "UDF name (`name` attribute).", nullable=False),
        text("udt_name", "Name of the UDT the field belongs to (scope `udt`); NULL for a standalone UDF."),
        text("declared_type", "Declared type (`type` attribute): String, Text, Boolean, Numeric, Date or URI."),
        text("unit", "Unit of measure (`unit` attribute, numeric fields); NULL when absent."),
        text("value_text", "The value exactly as sent (element text); NULL when the element is empty."),
        number("value_number", "The value as a number, for a Numeric UDF whose text is a finite decimal number."),
        boolean("value_bool", "The value as a boolean, for a Boolean UDF whose text is `true` or `false`."),
        date("value_date", "The value as a date, for a Date UDF whose text is YYYY-MM-DD."),
        text("parse_error", "Why the text did not parse as the declared type (or the type is unknown); "
                            "NULL when it parsed or needs no parsing."),
        integer("position", "0-based position of the field among the project's UDFs (UDT fields first).",
                checks=(Check.ge(0),)),
    ),
    key=("account", "project_limsid", "scope", "name"),
    unit_column="project_limsid",
)

PROJECT_FILES = Table(
    SCHEMA, "project_files",
    "Files attached to a project (`<file:file limsid uri>`), one row per file.",
    (
        ACCOUNT,
        PROJECT,
        text("file_limsid", "LIMS id of the file (`limsid`, or the last segment of its URI when absent).", nullable=False),
        text("uri", "URI of the file resource."),
    ),
    key=("account", "project_limsid", "file_limsid"),
    unit_column="project_limsid",
)

PROJECT_EXTERNAL_IDS = Table(
    SCHEMA, "project_external_ids",
    "Identifiers of the project in external systems (`<ri:externalid id uri>`), one row each.",
    (
        ACCOUNT,
        PROJECT,
        text("external_id", "The external id (`id` attribute): a URL or URN naming the external system and record.",
             nullable=False),
        text("uri", "URI of the representation the external id refers to (`uri` attribute)."),
    ),
    key=("account", "project_limsid", "external_id"),
    unit_column="project_limsid",
)

TABLES: tuple[Table, ...] = (PROJECTS, PROJECT_UDFS, PROJECT_FILES, PROJECT_EXTERNAL_IDS)

# Per instance, not per project: replaced for the account as a whole, once a run.
RESEARCHERS = Table(
    SCHEMA, "researchers",
    "Researchers of the instance (`GET /api/v2/researchers`, each `/researchers/{id}` read once a run) with their lab's name (`GET /api/v2/labs`); `projects.researcher_id` = `researcher_id`. Names and lab only: e-mail, phone, fax, credentials and UDFs are not stored.",
    (
        ACCOUNT,
        text("researcher_id", "Id of the researcher: the last segment of its `uri`.", nullable=False),
        text("uri", "The researcher's URI as the server wrote it."),
        text("first_name", "First name (`<first-name>`)."),
        text("last_name", "Last name (`<last-name>`)."),
        text("initials", "Initials (`<initials>`)."),
        text("lab_id", "Id of the researcher's lab (the last segment of `<lab uri>`); NULL when none."),
        text("lab_name", "Name of the lab (from the lab list's `<name>`); NULL when none or not listed."),
    ),
    key=("account", "researcher_id"),
    unit_column=None,
)

FILES = Table(
    SCHEMA, "files",
    "Details of the files attached to projects (`POST /api/v2/files/batch/retrieve`), read once a run for the files of the projects the run fetched; `project_files.file_limsid` = `file_limsid`. Upserted: a file's row stays when no later run reads it. Where the file came from on the uploader's computer (`original-location`) is not stored.",
    (
        ACCOUNT,
        text("file_limsid", "LIMS id of the file (`limsid`).", nullable=False),
        text("uri", "URI of the file resource."),
        text("project_limsid", "LIMS id of the project it is attached to (from `attached-to`); NULL when attached to something else."),
        text("attached_to", "URI of what the file is attached to (`<attached-to>`)."),
        text("original_name", "The file's name before it was imported (`<original-name>`)."),
        text("content_location", "Where the server stores the file (`<content-location>`), without any user name or password in the URL."),
        boolean("is_published", "Shown in LabLink (`<is-published>`)."),
    ),
    key=("account", "file_limsid"),
    unit_column=None,
)

DIMENSION_TABLES: tuple[Table, ...] = (RESEARCHERS, FILES)
