"""The pipeline's own tables: run ledger, quarantine, field issues, per-unit sync state,
schema version."""

from __future__ import annotations

from pwh.schemas.spec import Table, integer, json_text, text, timestamp

SCHEMA = "pipeline"

SCHEMA_VERSION = Table(
    SCHEMA, "schema_version",
    "Migrations applied to this warehouse file, one row each.",
    (
        integer("version", "Migration number.", nullable=False),
        text("description", "What the migration did."),
        timestamp("applied_at", "When it was applied (UTC)."),
    ),
    key=("version",), unit_column=None,
)

RUNS = Table(
    SCHEMA, "runs",
    "One row per sync run: what it did, how much, and how it ended.",
    (
        text("run_id", "Run id (the Prefect flow run id when run as a flow).", nullable=False),
        text("source", "Source system, e.g. `rayteams`."),
        text("account", "Account (lab, instance) synced."),
        text("mode", "`incremental` or `full_refresh`."),
        text("strategy", "Fetch strategy (RAYTeams: `aggregate` or `per_resource`)."),
        text("status", "`running`, `success`, `partial` (some projects failed: see `failed_units`), `failed` (also when the data committed but publishing the readers' replica failed: `error` says so; the command exited non-zero), `interrupted` (stopped by Ctrl-C or SIGTERM; every batch loaded before is committed and the next run resumes), or `abandoned` (the process died)."),
        timestamp("started_at", "Start (UTC)."),
        timestamp("ended_at", "End (UTC); NULL while running."),
        integer("units_seen", "Projects listed by the API."),
        integer("units_new", "Projects never synced before."),
        integer("units_changed", "Known projects whose cursor moved (or that came back after deletion)."),
        integer("units_unchanged", "Projects skipped because their cursor did not move."),
        integer("units_deleted", "Projects newly marked deleted (vanished from the list or answered NO_ITEM)."),
        integer("units_failed", "Projects that could not be fetched; retried by the next run."),
        json_text("failed_units", "The failed projects with their error, as JSON `{unit: error}`."),
        json_text("rows_loaded", "Rows loaded per table, as JSON `{table: rows}`."),
        integer("rows_rejected", "Records quarantined in `pipeline.rejected_records`."),
        integer("requests", "HTTP requests made (retries included)."),
        integer("retries", "HTTP retries."),
        text("error", "Why the run failed, when it did."),
    ),
    key=("run_id",), unit_column=None,
)

REJECTED_RECORDS = Table(
    SCHEMA, "rejected_records",
    "Quarantine: records that could not load, with every reason and the raw record (patient data pseudonymised, links removed). Replaced with the project.",
    (
        text("source", "Source system.", nullable=False),
        text("account", "Account.", nullable=False),
        text("unit_key", "The project the record belongs to.", nullable=False),
        integer("seq", "Position among the project's rejected records.", nullable=False),
        text("table_name", "Table the record was meant for."),
        text("record_key", "The record's key, e.g. `<project id>/<sk>`."),
        json_text("reasons", "Every reason the record was rejected, as a JSON array of text."),
        json_text("raw", "The record as received, redacted."),
        text("run_id", "Run that rejected it."),
        timestamp("rejected_at", "When (UTC)."),
    ),
    key=("source", "account", "unit_key", "seq"), unit_column="unit_key",
)

FIELD_ISSUES = Table(
    SCHEMA, "field_issues",
    "Fields that could not be read: the row loaded with the column NULL, and this says which field, why, and what the value looked like (described, never a patient field's value). Replaced with the project.",
    (
        text("source", "Source system.", nullable=False),
        text("account", "Account.", nullable=False),
        text("unit_key", "The project the row belongs to.", nullable=False),
        integer("seq", "Position among the project's field issues.", nullable=False),
        text("table_name", "Table of the row, e.g. `projects`."),
        text("record_key", "The row's record key, e.g. `<project id>/<sk>`."),
        text("field", "The field as the API names it (`created`, `subject.birth`); its column in the row is NULL."),
        text("reason", "Why it could not be read, e.g. `time stamp not between 1990 and 10 years from now`."),
        text("value_description", "What the value looked like: digits-and-punctuation text quoted, other text by its length, objects by their size; for patient fields at most the shape (`text shaped '99/99/9999'`)."),
        text("run_id", "Run that loaded the row."),
        timestamp("seen_at", "When (UTC)."),
    ),
    key=("source", "account", "unit_key", "seq"), unit_column="unit_key",
)

UNIT_STATE = Table(
    SCHEMA, "unit_state",
    "Sync state per project (unit): the cursor last loaded, committed in the same transaction as the project's rows.",
    (
        text("source", "Source system.", nullable=False),
        text("account", "Account.", nullable=False),
        text("unit_key", "Project id.", nullable=False),
        text("cursor", "The project's cursor when it was last loaded (RAYTeams: `updated`, epoch ms)."),
        timestamp("first_seen_at", "When the pipeline first loaded the project (UTC)."),
        timestamp("synced_at", "When the project was last loaded (UTC)."),
        text("run_id", "Run that last loaded it."),
        timestamp("deleted_at", "When it vanished from the API (UTC); NULL while it exists."),
        text("missing_streams", "Streams the project was last loaded without (excluded, or forbidden: HTTP 403), "
                                "comma-separated; their rows are older. A run that fetches such a stream refetches the "
                                "project. NULL: loaded whole."),
    ),
    key=("source", "account", "unit_key"), unit_column="unit_key",
)

ACCOUNTS = Table(
    SCHEMA, "accounts",
    "Every account synced, with where it lives: every row of a source table carries its `account`; join here for its region.",
    (
        text("source", "Source system.", nullable=False),
        text("account", "Account name, as in the `account` column of the source's tables.", nullable=False),
        text("region", "Region holding the account's data (RAYTeams isolates data and tokens by region); NULL where the source has none."),
        text("base_url", "API base URL synced."),
        timestamp("first_synced_at", "When a run first synced the account (UTC)."),
        timestamp("last_synced_at", "When a run last started for the account (UTC)."),
        text("last_run_id", "That run."),
    ),
    key=("source", "account"), unit_column=None,
)

PSEUDONYM_KEYS = Table(
    SCHEMA, "pseudonym_keys",
    "Which key made this warehouse's pseudonyms: its fingerprint, one row each time a key was adopted (the newest is in force). A sync with another key, or none, is refused.",
    (
        text("fingerprint", "HMAC-SHA256 of a fixed label under the key: names the key without revealing it.", nullable=False),
        timestamp("recorded_at", "When the key was adopted (UTC).", nullable=False),
        text("reason", "`first sync` (a new warehouse), `adopted` (a warehouse older than fingerprints) or `re-key` (`--rekey`)."),
        text("run_id", "The run that adopted it."),
    ),
    key=("recorded_at",), unit_column=None,
)

SHARD_LOADS = Table(
    SCHEMA, "shard_loads",
    "The load log of sharded syncs: one row per shard loaded from the staging location, written in the same transaction as the shard's rows, so a shard is loaded once however often it or the loader is retried.",
    (
        text("manifest_id", "The shard's identity: `<parent run id>:<shard>` (the idempotency key its flow run was started with).", nullable=False),
        text("attempt", "Which of the shard's attempts was loaded (a retried shard may have staged more than one)."),
        text("run_id", "The shard's run (its row in `pipeline.runs`)."),
        text("source", "Source system."),
        text("account", "Account."),
        integer("units", "Projects the shard loaded."),
        integer("rows", "Rows it loaded, every table together."),
        timestamp("loaded_at", "When it was loaded (UTC)."),
    ),
    key=("manifest_id",), unit_column=None,
)

TABLES: tuple[Table, ...] = (SCHEMA_VERSION, RUNS, REJECTED_RECORDS, FIELD_ISSUES, UNIT_STATE, ACCOUNTS, PSEUDONYM_KEYS,
                             SHARD_LOADS)
