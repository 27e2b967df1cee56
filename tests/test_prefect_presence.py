"""`pwh sync` decides between a Prefect flow run and a plain run from the Prefect API
the settings name, read without importing Prefect (pwh/flows/host.py); the reading must be
Prefect's own, in every place Prefect looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pwh.flows.host import read_api_url

URL = "http://127.0.0.1:4299/api"


def configure(where: str, cwd: Path, home: Path, monkeypatch) -> str | None:
    """Put an API URL in one place Prefect reads; returns the URL Prefect should see."""
    if where == "environment":
        monkeypatch.setenv("PREFECT_API_URL", URL)
    elif where == "active profile":
        (home / "profiles.toml").write_text(
            f'active = "server"\n[profiles.server]\nPREFECT_API_URL = "{URL}"\n[profiles.other]\n')
    elif where == "PREFECT_PROFILE":
        (home / "profiles.toml").write_text(
            f'active = "other"\n[profiles.other]\n[profiles.server]\nPREFECT_API_URL = "{URL}"\n')
        monkeypatch.setenv("PREFECT_PROFILE", "server")
    elif where == "inactive profile":
        (home / "profiles.toml").write_text(
            f'active = "other"\n[profiles.other]\n[profiles.server]\nPREFECT_API_URL = "{URL}"\n')
        return None
    elif where == "prefect.toml":
        (cwd / "prefect.toml").write_text(f'[api]\nurl = "{URL}"\n')
    elif where == "pyproject.toml":
        (cwd / "pyproject.toml").write_text(f'[project]\nname = "x"\n[tool.prefect.api]\nurl = "{URL}"\n')
    elif where == ".env":
        (cwd / ".env").write_text(f"# a comment\nOTHER=1\nPREFECT_API_URL='{URL}'\n")
    elif where == "nowhere":
        return None
    return URL


@pytest.mark.parametrize("where", ["nowhere", "environment", "active profile", "PREFECT_PROFILE",
                                   "inactive profile", "prefect.toml", "pyproject.toml", ".env"])
def test_the_api_url_is_read_as_prefect_reads_it(where, tmp_path, monkeypatch):
    from prefect.settings import Settings

    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.chdir(cwd)
    expected = configure(where, cwd, home, monkeypatch)
    assert read_api_url(cwd) == expected
    assert Settings().api.url == expected  # Prefect agrees


def test_no_source_sync_imports_prefect():
    """What a plain run of any source imports (its sync module, the runner, the CLI)
    pulls in no Prefect module: a fresh interpreter, then sys.modules."""
    import subprocess
    import sys

    code = ("import sys, pwh.cli, pwh.flows.rayteams_sync, pwh.flows.openproject_sync, pwh.flows.clarity_sync, "
            "pwh.flows.incoplax_sync; print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
