"""RAYTeams' file-type filter (``GET /file/{_projectId}/{_type}``) as an option: the
Prefect flow against the simulator on 127.0.0.1 into a DuckDB file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from pwh.flows.prefect_flows import sync_rayteams
from pwh.flows.rayteams_sync import check_file_types
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SIMULATOR_KEY, SimulatorOptions, build_app
from pwh.simulators.simulation import serving

TOKEN = "tok-SECRET-file-types-31"
CLIENT_ID = "client-SECRET-ft"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)


async def sync(dataset, db: Path, **params) -> tuple[dict, int]:
    """A run and the file requests the simulator answered."""
    app = build_app(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID))
    async with serving(app, "127.0.0.1", 0) as root:
        summary = await sync_rayteams(base_url=f"{root}/v1.0", db_path=str(db), batch_size=16, **params)
    return summary, app[SIMULATOR_KEY].stats_snapshot()["file"]


def files_by_type(db: Path) -> Counter:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return Counter(dict(con.execute("SELECT file_type, count(*) FROM rayteams.files GROUP BY 1").fetchall()))
    finally:
        con.close()


def truth(dataset: RayteamsDataset) -> Counter:
    return Counter(f["filetype"] for pid in dataset.project_ids() for f in (dataset.files(pid) or {}).get("files", []))


@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_only_the_chosen_file_types_are_fetched_and_the_others_are_kept(tmp_path, strategy):
    dataset = RayteamsDataset(DatasetConfig(seed=51, n_projects=30))
    expected = truth(dataset)
    assert set(expected) == {"maxilla", "mandible", "face"}
    db = tmp_path / "w.duckdb"

    summary, file_requests = await sync(dataset, db, strategy=strategy, file_types=["mandible"])
    assert summary["status"] == "success" and file_requests == 30  # one typed request a project
    assert files_by_type(db) == Counter(mandible=expected["mandible"])

    summary, file_requests = await sync(dataset, db, strategy=strategy, mode="full_refresh",
                                        file_types=["face", "maxilla", "face"])
    assert summary["status"] == "success" and file_requests == 60  # two types, each once
    assert files_by_type(db) == expected  # the mandible files of the first run are kept

    summary, file_requests = await sync(dataset, db, strategy=strategy, mode="full_refresh")
    assert file_requests == 30 and files_by_type(db) == expected  # no filter: one request, all types


def test_an_unknown_file_type_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown file type 'skull'; expected maxilla, mandible, face"):
        check_file_types(["mandible", "skull"])
    assert check_file_types(None) == () and check_file_types(["face", "face"]) == ("face",)
