"""Every PWH_* variable is named, parsed and checked in one place (pwh/settings.py); a
malformed one is refused in one line that names it, before the run touches anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pwh.errors import SettingError
from pwh.settings import (
    CRASH_AT,
    DUCKDB_MEMORY,
    LOCK_WAIT_S,
    MAX_DELETE_SHARE,
    MAX_RESPONSE_BYTES,
    PSEUDONYM_KEY,
    VARIABLES,
)
from pwh.validate import check_environment

PACKAGE = Path(__file__).resolve().parent.parent / "pwh"


def test_every_pwh_variable_the_code_names_is_declared_in_settings():
    named = {name for path in PACKAGE.rglob("*.py") for name in re.findall(r"\bPWH_[A-Z_]+\b", path.read_text())}
    declared = {variable.name for variable in VARIABLES}
    assert named - declared == set()
    assert {"PWH_LOCK_WAIT_S", "PWH_MAX_DELETE_SHARE", "PWH_MAX_RESPONSE_BYTES", "PWH_PSEUDONYM_KEY"} <= declared


@pytest.mark.parametrize(("variable", "text", "value"), [
    (LOCK_WAIT_S, "0", 0.0), (LOCK_WAIT_S, " 2.5 ", 2.5), (LOCK_WAIT_S, "1e3", 1000.0),
    (MAX_DELETE_SHARE, "0", 0.0), (MAX_DELETE_SHARE, "1", 1.0), (MAX_DELETE_SHARE, ".1", 0.1),
    (MAX_RESPONSE_BYTES, "1", 1), (MAX_RESPONSE_BYTES, "1048576", 1048576),
    (DUCKDB_MEMORY, "512MB", 512_000_000), (DUCKDB_MEMORY, " 2 gb ", 2_000_000_000),
    (DUCKDB_MEMORY, "1.5GiB", 1_610_612_736), (DUCKDB_MEMORY, "8MB", 8_000_000), (DUCKDB_MEMORY, "1TB", 10**12),
    (CRASH_AT, "load-before-commit", ("load-before-commit", 1)), (CRASH_AT, "load-after-commit:2", ("load-after-commit", 2)),
])
def test_a_well_formed_value_is_read(monkeypatch, variable, text, value):
    monkeypatch.setenv(variable.name, text)
    assert variable.read() == value


@pytest.mark.parametrize(("variable", "text", "message"), [
    (LOCK_WAIT_S, "soon", "PWH_LOCK_WAIT_S must be a number of seconds, not 'soon'"),
    (LOCK_WAIT_S, "-1", "PWH_LOCK_WAIT_S must be a number of seconds, 0 or more, not '-1'"),
    (LOCK_WAIT_S, "nan", "PWH_LOCK_WAIT_S must be a number of seconds, 0 or more, not 'nan'"),
    (LOCK_WAIT_S, "inf", "PWH_LOCK_WAIT_S must be a number of seconds, 0 or more, not 'inf'"),
    (MAX_DELETE_SHARE, "1.5", "PWH_MAX_DELETE_SHARE must be a share between 0 and 1, not '1.5'"),
    (MAX_DELETE_SHARE, "25%", "PWH_MAX_DELETE_SHARE must be a share between 0 and 1, not '25%'"),
    (MAX_RESPONSE_BYTES, "64MB", "PWH_MAX_RESPONSE_BYTES must be a whole number of bytes, not '64MB'"),
    (MAX_RESPONSE_BYTES, "0", "PWH_MAX_RESPONSE_BYTES must be at least 1 byte, not '0'"),
    (DUCKDB_MEMORY, "lots", "PWH_DUCKDB_MEMORY must be a size such as 512MB or 2GB, not 'lots'"),
    (DUCKDB_MEMORY, "512", "PWH_DUCKDB_MEMORY must be a size such as 512MB or 2GB, not '512'"),
    (DUCKDB_MEMORY, "-1GB", "PWH_DUCKDB_MEMORY must be a size such as 512MB or 2GB, not '-1GB'"),
    (DUCKDB_MEMORY, "2GB; SET threads=1", "PWH_DUCKDB_MEMORY must be a size such as 512MB or 2GB, not '2GB; SET threads=1'"),
    (DUCKDB_MEMORY, "7.9MB", "PWH_DUCKDB_MEMORY must be at least 8MB (DuckDB cannot open a warehouse in less), not '7.9MB'"),
    (CRASH_AT, "load:0", "PWH_CRASH_AT must be POINT or POINT:N (N from 1), not 'load:0'"),
    (CRASH_AT, ":2", "PWH_CRASH_AT must be POINT or POINT:N (N from 1), not ':2'"),
])
def test_a_malformed_value_is_one_line_naming_the_variable(monkeypatch, variable, text, message):
    monkeypatch.setenv(variable.name, text)
    with pytest.raises(SettingError) as raised:
        variable.read()
    assert str(raised.value) == message
    with pytest.raises(SettingError, match=re.escape(message)):
        check_environment()


def test_a_short_pseudonym_key_is_refused_without_quoting_it(monkeypatch):
    monkeypatch.setenv(PSEUDONYM_KEY.name, "short-secret")
    with pytest.raises(SettingError) as raised:
        check_environment()
    assert str(raised.value) == "PWH_PSEUDONYM_KEY must be at least 16 bytes"


def test_an_empty_variable_is_an_unset_one(monkeypatch):
    for variable in VARIABLES:
        monkeypatch.setenv(variable.name, "")
    check_environment()
    assert LOCK_WAIT_S.read() is None and MAX_DELETE_SHARE.read() is None


@pytest.mark.parametrize(("name", "value"), [("PWH_MAX_DELETE_SHARE", "half"), ("PWH_LOCK_WAIT_S", "-5")])
async def test_a_run_with_a_malformed_setting_fails_before_it_touches_the_warehouse(tmp_path, monkeypatch, name, value):
    from pwh.flows.syncs import sync_rayteams

    monkeypatch.setenv("RAYTEAMS_TOKEN", "t")
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", "c")
    monkeypatch.setenv(name, value)
    db = tmp_path / "w.duckdb"
    with pytest.raises(SettingError, match=f"^{name} "):
        await sync_rayteams("http://127.0.0.1:9", db_path=str(db))
    assert not db.exists()
