"""The RAYTeams tables: one per sk-typed record kind, plus files and unknown kinds."""

from __future__ import annotations

from pandera.api.checks import Check

from pwh.schemas.spec import (
    Column,
    Table,
    boolean,
    integer,
    json_text,
    number,
    small_int,
    text,
    timestamp,
)

SCHEMA = "rayteams"

NON_NEGATIVE = (Check.ge(0),)
BIRTH_YEAR = (Check.in_range(1850, 2200),)


def _sk_prefix(prefix: str) -> tuple[Check, ...]:
    return (Check.str_startswith(prefix),)


ACCOUNT = text("account", "Name of the RAYTeams account (lab) the row was synced from.", nullable=False)
PROJECT_ID = text("project_id", "RAYTeams project id (`_id`, a UUID): the patient case.", nullable=False)
EXTRA = json_text("extra", "Fields of the record this table does not model, as JSON (patient data pseudonymised, download links removed); NULL when none.")
PATIENT = text("patient_pseudonym", "Keyed pseudonym (HMAC-SHA256) of `patientId`: joinable across tables, not reversible without the key.")
SUBJECT = text("subject_pseudonym", "Keyed pseudonym (HMAC-SHA256) of the patient's name (`subject.name`); the name itself is never stored.")
BIRTH = small_int("subject_birth_year", "Year of the patient's birth (`subject.birth`); the full date is never stored.", checks=BIRTH_YEAR)


def _sk(prefix: str, what: str) -> Column:
    return text("sk", f"Sort key of the record, `{prefix}<epoch ms>`: identifies the {what} within its project.",
                nullable=False, checks=_sk_prefix(prefix))


PROJECTS = Table(
    SCHEMA, "projects",
    "One row per RAYTeams project (patient case), from the project record (`sk = project`).",
    (
        ACCOUNT,
        PROJECT_ID,
        text("region", "Region that holds the project's data (e.g. `ap-northeast-2`)."),
        text("name", "Project name (alias); numbers are kept as their text."),
        text("project_type", "Project type (`projecttype`), e.g. `DENTALAVATAR`."),
        PATIENT,
        SUBJECT,
        BIRTH,
        integer("file_count", "Number of files in the project (`count`); NULL when the API sent a boolean instead.", checks=NON_NEGATIVE),
        integer("size_bytes", "Total size of the project's files in bytes (`size`).", checks=NON_NEGATIVE),
        text("owner_group_id", "Group id of the user who created the project."),
        text("lab_id", "Group id of the lab the project is shared with."),
        text("last_update_group_id", "Group id that updated the project last."),
        text("status_code", "`status.code`: `custom` when a status is set."),
        text("status_text", "`status.text`: the status title, e.g. `Request Confirm`."),
        boolean("is_trash", "In the trash (deleted in RAYTeams); `istrash`."),
        boolean("is_archive", "Archived; `isarchive`."),
        timestamp("created_at", "When the project was created (UTC)."),
        timestamp("updated_at", "When the project was last updated (UTC); the incremental cursor."),
        EXTRA,
        timestamp("deleted_at", "When the pipeline saw the project vanish from the API (UTC); NULL while it exists."),
    ),
    key=("account", "project_id"),
    managed=("deleted_at",),
)

MEMOS = Table(
    SCHEMA, "memos",
    "Memos of a project (`sk = memo:<ts>`); their comments are in `memo_comments`.",
    (
        ACCOUNT, PROJECT_ID, _sk("memo:", "memo"),
        text("content_html", "Memo text (HTML)."),
        timestamp("created_at", "When the memo was written (UTC)."),
        text("group_id", "Group id of the author."),
        boolean("is_archive", "Archived; `isarchive`."),
        integer("comment_count", "Number of comments on the memo.", checks=NON_NEGATIVE),
        EXTRA,
    ),
    key=("account", "project_id", "sk"),
)

MEMO_COMMENTS = Table(
    SCHEMA, "memo_comments",
    "Comments on memos (one level deep); the API calls the text `content` or `contents`.",
    (
        ACCOUNT, PROJECT_ID,
        text("memo_sk", "`sk` of the memo the comment belongs to.", nullable=False, checks=_sk_prefix("memo:")),
        integer("position", "0-based position of the comment in the memo's list (comments have no id).", nullable=False, checks=NON_NEGATIVE),
        text("content_html", "Comment text (HTML)."),
        timestamp("created_at", "When the comment was written (UTC)."),
        text("group_id", "Group id of the author."),
        EXTRA,
    ),
    key=("account", "project_id", "memo_sk", "position"),
)

ATTACHMENTS = Table(
    SCHEMA, "attachments",
    "Attachment metadata (`sk = attachments:<ts>`); download links are never stored.",
    (
        ACCOUNT, PROJECT_ID, _sk("attachments:", "attachment"),
        text("file_type", "MIME type, e.g. `image/png` (`filetype`)."),
        text("name", "File name."),
        integer("size_bytes", "Size in bytes.", checks=NON_NEGATIVE),
        timestamp("created_at", "When it was attached (UTC)."),
        EXTRA,
    ),
    key=("account", "project_id", "sk"),
)

HISTORIES = Table(
    SCHEMA, "histories",
    "Change history of a project (`sk = his:<ts>`).",
    (
        ACCOUNT, PROJECT_ID, _sk("his:", "history entry"),
        text("update_type", "What changed, e.g. `RAY_LINK_PROJECT_ADDMEMO` (`updateType`)."),
        timestamp("created_at", "When the change happened (UTC)."),
        json_text("data", "Body of the request that caused the change, as JSON; its shape depends on `update_type` (patient data pseudonymised)."),
        EXTRA,
    ),
    key=("account", "project_id", "sk"),
)

ORDERS = Table(
    SCHEMA, "orders",
    "Orders placed on a project (`sk = order:<ts>`), with product and workflow status.",
    (
        ACCOUNT, PROJECT_ID, _sk("order:", "order"),
        text("order_id", "Order id: `<project id>-<created ts>`."),
        text("owner_group_id", "Group id that owns the project."),
        text("lab_id", "Group id of the lab taking the order."),
        text("status", "Workflow node id of the current status (`status`)."),
        text("status_name", "Title of the current status (`statusName`)."),
        text("status_type", "`NEW`, `INPROGRESS` or `CLOSED` (`statusType`)."),
        text("product_name", "`product.productname`."),
        number("product_price", "`product.price`."),
        text("product_currency", "`product.currency` (payment unit)."),
        text("product_discount", "`product.discount`: a rate or free text, as sent."),
        PATIENT,
        SUBJECT,
        BIRTH,
        text("memo", "Free-text remarks on the order."),
        json_text("medical_records", "`medicalRecords` as JSON."),
        json_text("treatments", "`treatments` (treatment plan) as JSON."),
        json_text("workflow", "`workflow` as JSON."),
        timestamp("created_at", "When the order was created (UTC)."),
        timestamp("updated_at", "When the order was last updated (UTC)."),
        EXTRA,
    ),
    key=("account", "project_id", "sk"),
)

GROUPS = Table(
    SCHEMA, "groups",
    "Groups related to a project: its owner (`sk = project:institute:owner`) and the groups it is shared with.",
    (
        ACCOUNT, PROJECT_ID,
        text("sk", "`project:institute:owner` or `project:institute:<ts>`.", nullable=False, checks=_sk_prefix("project:institute:")),
        text("group_id", "Group id (`group_id`)."),
        boolean("is_owner", "True for the owner group, false for a shared group."),
        text("name", "Project name as this group sees it."),
        PATIENT,
        EXTRA,
    ),
    key=("account", "project_id", "sk"),
)

FILES = Table(
    SCHEMA, "files",
    "Downloadable project files (`GET /file/{_id}`, or `/file/{_id}/{_type}` per type with `--file-type`), one row per file; the signed download link is never stored.",
    (
        ACCOUNT, PROJECT_ID,
        text("file_type", "`maxilla`, `mandible` or `face` (`filetype`).", nullable=False),
        text("name", "File name.", nullable=False),
        integer("size_bytes", "Size in bytes.", checks=NON_NEGATIVE),
        timestamp("download_expires_at", "When the download link handed out at sync time expired (UTC; `downloadExpired`)."),
        EXTRA,
    ),
    key=("account", "project_id", "file_type", "name"),
)

OTHER_RECORDS = Table(
    SCHEMA, "other_records",
    "Records whose sk prefix is none of the documented kinds, kept whole so nothing is lost.",
    (
        ACCOUNT, PROJECT_ID,
        text("sk", "The record's sort key.", nullable=False),
        text("kind", "The sk prefix (before the first `:`)."),
        json_text("record", "The whole record as JSON (patient data pseudonymised, download links removed)."),
    ),
    key=("account", "project_id", "sk"),
)

TABLES: tuple[Table, ...] = (
    PROJECTS, MEMOS, MEMO_COMMENTS, ATTACHMENTS, HISTORIES, ORDERS, GROUPS, FILES, OTHER_RECORDS,
)
