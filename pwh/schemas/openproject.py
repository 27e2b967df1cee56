"""The OpenProject tables: projects (and programs/portfolios), and each project's linked
resources (work packages, versions, categories, types, memberships), plus the custom
field values of projects and work packages, one row per value; and the instance's
dimensions (custom field definitions, work-package statuses, users), fetched once a run."""

from __future__ import annotations

from pandera.api.checks import Check

from pwh.schemas.spec import Column, Table, boolean, date, integer, json_text, text, timestamp

SCHEMA = "openproject"

POSITIVE = (Check.ge(1),)
PERCENT = (Check.in_range(0, 100),)

ACCOUNT = text("account", "Name of the OpenProject instance (account) the row was synced from.", nullable=False)
PROJECT_ID = text("project_id", "Id of the project (`id`, as text) the row was fetched through: the unit of replacement.", nullable=False)
ID = integer("id", "The resource's own id (`id`).", nullable=False, checks=POSITIVE)
EXTRA = json_text("extra", "Properties and links of the resource this table does not model, as JSON; NULL when none.")
CREATED = timestamp("created_at", "When it was created (UTC; `createdAt`).")
UPDATED = timestamp("updated_at", "When it was last changed (UTC; `updatedAt`).")


def _link_id(name: str, what: str) -> Column:
    return integer(f"{name}_id", f"Id of the {what} (from the `_links` href); NULL when unset, hidden or unreadable (see `pipeline.field_issues`).", checks=POSITIVE)


def _link_title(name: str, what: str) -> Column:
    return text(f"{name}_title", f"Title of the {what} link (its display name).")


PROJECTS = Table(
    SCHEMA, "projects",
    "One row per project (or program/portfolio) visible to the API key (`GET /api/v3/projects`), completed from `/api/v3/projects/{id}` when the list abbreviated it.",
    (
        ACCOUNT,
        PROJECT_ID,
        text("workspace_type", "`Project`, `Program` or `Portfolio` (`_type`).", nullable=False),
        text("identifier", "The project's URL identifier (`identifier`)."),
        text("name", "Project name."),
        boolean("active", "False when the project is archived (`active`)."),
        boolean("public", "Accessible to everybody (`public`)."),
        boolean("favorited", "Favorited by the API key's user (`favorited`)."),
        text("status_code", "Project status code from `_links.status` (e.g. `on_track`, `at_risk`, `off_track`); NULL when none."),
        text("status_title", "Project status title (e.g. `On track`)."),
        text("status_explanation_raw", "Why the project has its status (`statusExplanation.raw`)."),
        integer("parent_id", "Id of the parent project/program/portfolio when disclosed to the key (`_links.parent`); NULL for a root, an undisclosed parent or a link that cannot be read.", checks=POSITIVE),
        text("parent_title", "Title of the parent when disclosed."),
        boolean("parent_undisclosed", "True when the project has a parent the key may not see (`urn:openproject-org:api:v3:undisclosed`)."),
        json_text("ancestor_ids", "Ids of the ancestors, root first, as a JSON array; an undisclosed ancestor, or one whose link cannot be read (see `pipeline.field_issues`), is null in its place."),
        text("description_format", "`plain`, `markdown` or `custom` (`description.format`)."),
        text("description_raw", "Description as written (`description.raw`)."),
        text("description_html", "Description rendered as HTML (`description.html`)."),
        CREATED,
        timestamp("updated_at", "When the project's own attributes last changed (UTC; `updatedAt`); edits to its work packages do not move it. Part of the incremental cursor."),
        json_text("not_visible", "Linked resources that answered 404 (not visible to this key), as a JSON array, e.g. `[\"memberships\"]`; NULL when all were read."),
        EXTRA,
        timestamp("deleted_at", "When the pipeline saw the project vanish from the API (UTC); NULL while it exists."),
    ),
    key=("account", "project_id"),
    managed=("deleted_at",),
)

WORK_PACKAGES = Table(
    SCHEMA, "work_packages",
    "Work packages of a project (`/api/v3/projects/{id}/work_packages`, every status, all pages); ones the API lists from subprojects are loaded with their own project.",
    (
        ACCOUNT, PROJECT_ID, ID,
        integer("lock_version", "Optimistic-locking version (`lockVersion`)."),
        text("subject", "Subject (title)."),
        _link_id("type", "type"), _link_title("type", "type"),
        _link_id("status", "status"), _link_title("status", "status"),
        _link_id("priority", "priority"), _link_title("priority", "priority"),
        _link_id("author", "author (user)"),
        _link_id("assignee", "assignee (user or group)"),
        _link_id("responsible", "accountable user"),
        _link_id("version", "version"),
        _link_id("category", "category"),
        _link_id("parent", "parent work package"),
        text("description_raw", "Description as written (`description.raw`)."),
        text("description_html", "Description rendered as HTML (`description.html`)."),
        date("start_date", "Scheduled start (`startDate`)."),
        date("due_date", "Scheduled end (`dueDate`)."),
        date("milestone_date", "Date of a milestone (`date`)."),
        text("estimated_time", "Estimated work as an ISO 8601 duration, e.g. `PT8H` (`estimatedTime`)."),
        text("spent_time", "Time booked as an ISO 8601 duration (`spentTime`)."),
        integer("percentage_done", "Completion in percent (`percentageDone`).", checks=PERCENT),
        boolean("schedule_manually", "Manually scheduled (`scheduleManually`)."),
        CREATED, UPDATED, EXTRA,
    ),
    key=("account", "project_id", "id"),
)

VERSIONS = Table(
    SCHEMA, "versions",
    "Versions available in a project (`/api/v3/projects/{id}/versions`); a shared version appears under every project it is available in.",
    (
        ACCOUNT, PROJECT_ID, ID,
        text("name", "Version name."),
        text("status", "`open`, `locked` or `closed` (`status`)."),
        text("sharing", "How the version is shared (`none`, `descendants`, `hierarchy`, `tree`, `system`)."),
        date("start_date", "Start (`startDate`)."),
        date("end_date", "Due date (`endDate`)."),
        text("description_raw", "Description as written (`description.raw`)."),
        _link_id("defining_project", "project that defines the version"),
        CREATED, UPDATED, EXTRA,
    ),
    key=("account", "project_id", "id"),
)

CATEGORIES = Table(
    SCHEMA, "categories",
    "Work-package categories of a project (`/api/v3/projects/{id}/categories`).",
    (
        ACCOUNT, PROJECT_ID, ID,
        text("name", "Category name."),
        _link_id("default_assignee", "user new work packages of this category are assigned to"),
        _link_title("default_assignee", "default assignee"),
        EXTRA,
    ),
    key=("account", "project_id", "id"),
)

TYPES = Table(
    SCHEMA, "types",
    "Work-package types enabled in a project (`/api/v3/projects/{id}/types`).",
    (
        ACCOUNT, PROJECT_ID, ID,
        text("name", "Type name, e.g. `Bug`."),
        text("color", "Colour as hex, e.g. `#ff0000`."),
        integer("position", "Sort position."),
        boolean("is_default", "Enabled for new projects by default (`isDefault`)."),
        boolean("is_milestone", "Work packages of this type are milestones (`isMilestone`)."),
        CREATED, UPDATED, EXTRA,
    ),
    key=("account", "project_id", "id"),
)

MEMBERSHIPS = Table(
    SCHEMA, "memberships",
    "Members of a project and their roles (`/api/v3/memberships` filtered on the project); empty for a project whose memberships are not visible to the key (see `projects.not_visible`).",
    (
        ACCOUNT, PROJECT_ID, ID,
        text("principal_type", "`user`, `group` or `placeholder_user` (from the principal's href)."),
        _link_id("principal", "member (user, group or placeholder user)"),
        _link_title("principal", "member"),
        json_text("role_ids", "Ids of the member's roles in the project, as a JSON array; a role whose href cannot be read is null (see `pipeline.field_issues`)."),
        json_text("role_titles", "Names of the member's roles, as a JSON array aligned with `role_ids` (null where the role or its title cannot be read)."),
        CREATED, UPDATED, EXTRA,
    ),
    key=("account", "project_id", "id"),
)

CUSTOM_VALUES = Table(
    SCHEMA, "custom_values",
    "Custom field values of projects and work packages, one row per `customFieldN` property, `customFieldN` link and `customCommentN`.",
    (
        ACCOUNT,
        PROJECT_ID,
        text("owner_type", "`project` or `work_package`: what the value belongs to.", nullable=False,
             checks=(Check.isin(["project", "work_package"]),)),
        integer("owner_id", "Id of the project or work package.", nullable=False, checks=POSITIVE),
        text("field", "Property name, e.g. `customField12` or `customComment12`.", nullable=False),
        text("kind", "`value` (a property), `link` (a reference in `_links`: user, list, version…) or `comment` (`customCommentN`).", nullable=False,
             checks=(Check.isin(["value", "link", "comment"]),)),
        integer("custom_field_id", "N of `customFieldN` / `customCommentN`.", nullable=False, checks=POSITIVE),
        json_text("value", "The value exactly as sent, as JSON (a number, text, boolean, Formattable object, link or array of links)."),
        text("value_text", "A text rendering: numbers and booleans as text, Formattable as its raw text, links as their titles (joined by `, `)."),
    ),
    key=("account", "project_id", "owner_type", "owner_id", "field", "kind"),
)

TABLES: tuple[Table, ...] = (PROJECTS, WORK_PACKAGES, VERSIONS, CATEGORIES, TYPES, MEMBERSHIPS, CUSTOM_VALUES)

# ---------------------------------------------------------------------------- dimensions
# Per instance, not per project: no project_id; each is replaced (or, for custom fields,
# upserted) for the account as a whole, once a run (pwh/warehouse/load.py::load_dimensions).

CUSTOM_FIELDS = Table(
    SCHEMA, "custom_fields",
    "Custom field definitions, from the project schema (`/api/v3/projects/schema`) and the work-package schemas (`/api/v3/work_packages/schemas`) of the work packages a run fetched; `custom_values.custom_field_id` = `id`. Upserted: a definition no longer in any schema read stays.",
    (
        ACCOUNT,
        ID,
        text("applies_to", "`project` or `work_package`: the schema the definition was read from.", nullable=False,
             checks=(Check.isin(["project", "work_package"]),)),
        text("name", "The field's name as users see it (`name`)."),
        text("field_type", "The API's type of its values, e.g. `Integer`, `String`, `Formattable`, `Boolean`, `User`, `CustomOption`, `[]CustomOption` (a multi-select list)."),
        text("location", "`_links` when values are links (users, list options, versions), NULL when they are properties."),
        boolean("required", "A value is required (`required`)."),
        text("visibility", "`default` or `hidden` (project fields; `visibility`)."),
        EXTRA,
    ),
    key=("account", "id"),
    unit_column=None,
)

STATUSES = Table(
    SCHEMA, "statuses",
    "Work-package statuses of the instance (`/api/v3/statuses`); `work_packages.status_id` = `id`. (Project statuses are a fixed list: `projects.status_code`.)",
    (
        ACCOUNT, ID,
        text("name", "Status name, e.g. `In progress`."),
        boolean("is_closed", "Work packages in it count as closed (`isClosed`)."),
        boolean("is_default", "New work packages start in it (`isDefault`)."),
        boolean("is_readonly", "Work packages in it cannot be edited (`isReadonly`)."),
        integer("default_done_ratio", "% done of a work package in it, when progress follows status (`defaultDoneRatio`)."),
        integer("position", "Sort position."),
        text("color", "Colour as hex."),
        EXTRA,
    ),
    key=("account", "id"),
    unit_column=None,
)

USERS = Table(
    SCHEMA, "users",
    "Users of the instance (`/api/v3/users`; only administrators and keys with a user-managing permission may list them: otherwise the run ends `partial` and the rows are kept). Their names only: e-mail addresses, logins, avatars and other personal properties are not stored. `work_packages.author_id`/`assignee_id`/`responsible_id` and `memberships.principal_id` (type `user`) = `id`.",
    (
        ACCOUNT, ID,
        text("name", "Display name (`name`)."),
        text("status", "`active`, `registered`, `locked` or `invited` (`status`)."),
        boolean("admin", "An administrator (`admin`)."),
        CREATED, UPDATED,
    ),
    key=("account", "id"),
    unit_column=None,
)

DIMENSION_TABLES: tuple[Table, ...] = (CUSTOM_FIELDS, STATUSES, USERS)
