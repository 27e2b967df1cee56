"""Incoplax's list ``filter`` and ``mask`` as sync options: the Prefect flow against the
simulator on 127.0.0.1 into a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pwh.flows.prefect_flows import sync_incoplax
from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.incoplax.client import check_filter, check_mask

TOKEN = "inc-SECRET-options-5d"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("INCOPLAX_TOKEN", TOKEN)


async def sync(dataset: IncoplaxDataset, db: Path, **params) -> dict:
    async with serving(build_app(dataset, SimulatorOptions(token=TOKEN)), any_method=True) as url:
        return await sync_incoplax(base_url=url, db_path=str(db), batch_size=16, page_size=10, **params)


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("listing", ["auto", "minimal", "recent"])
async def test_a_filter_syncs_only_what_it_selects_and_marks_nothing_else_deleted(tmp_path, listing):
    dataset = IncoplaxDataset(DatasetConfig(seed=61, n_projects=25))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db, listing=listing)
    chosen = sorted(dataset.projects)[3]
    code = dataset.projects[chosen]["code"]
    selected = sorted(pid for pid, p in dataset.projects.items() if p["code"] == code)
    # every project changed, and some removed: still not marked deleted by a filtered run
    change = dataset.mutate(seed=4, update_share=1.0, add_share=0.0, remove_share=0.2)
    assert change.removed and chosen not in change.removed
    summary = await sync(dataset, db, listing=listing, filter={"code": code})
    assert summary["status"] == "success" and summary["units_seen"] == len(selected)
    assert summary["units_changed"] == len(selected) and summary["units_deleted"] == 0
    assert query(db, "SELECT count(*) FROM incoplax.projects WHERE deleted_at IS NOT NULL") == [(0,)]
    # only the selected projects hold their new state (their cursor is the new ext.lwt)
    cursors = dict(query(db, "SELECT unit_key, cursor FROM pipeline.unit_state WHERE source = 'incoplax'"))
    synced = {pid for pid, p in dataset.projects.items() if cursors.get(pid) == p["ext"]["lwt"]}
    assert synced == set(selected)


async def test_a_mask_fetches_and_stores_only_its_fields(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=62, n_projects=12))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db, mask=["code", "opts.title"])
    assert summary["status"] == "success" and summary["units_new"] == 12
    rows = query(db, "SELECT project_id, code, name, title, comment, created_at, last_write_at FROM incoplax.projects")
    assert len(rows) == 12
    for pid, code, name, title, comment, created, written in rows:
        project = dataset.projects[pid]
        assert code == project["code"] and title == (project.get("opts") or {}).get("title")
        assert name is None and comment is None and created is None and written is not None
    # three list pages (the empty one proves the end); a detail request only for an entry
    # the list sent without a masked field (a project without opts)
    without = sum(1 for p in dataset.projects.values() if "title" not in (p.get("opts") or {}))
    assert summary["requests"] == 3 + without < 3 + 12


@pytest.mark.parametrize("mask, message", [
    (["code", "opts.comment"], "mask: unknown field 'opts.comment'; available: id, code, name, opts.title, ext.lwt, ext.ct"),
    (["nope,code"], "mask: unknown field 'nope'"),
])
def test_an_unknown_mask_field_is_refused(mask, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_mask(mask)


def test_masks_and_filters_are_normalised():
    assert check_mask(["code, name", "code"]) == ("id", "ext.lwt", "code", "name")
    assert check_mask(None) is None and check_filter(None) is None and check_filter(" ") is None
    assert check_filter('{"code": "5102"}') == {"code": "5102"}
    for bad in ("[1]", "{}", "nope", '"x"'):
        with pytest.raises(ValueError, match="filter must be a JSON object"):
            check_filter(bad)
