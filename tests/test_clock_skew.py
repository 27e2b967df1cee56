"""A Clarity server whose ``Date`` header is skewed for one run: the watermark never runs
ahead of our own clock, so the change made after the skewed run is listed by the next.
The Clarity simulator (stamping ``last-modified`` by the true clock) behind a middleware
of the test's own that rewrites ``Date``, the plain engine, a real DuckDB file."""

from __future__ import annotations

import email.utils
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from pwh.flows.clarity_sync import ClarityAdapter, ListingMark, watermark
from pwh.flows.engine import run_sync
from pwh.simulators.clarity.dataset import ClarityDataset, DatasetConfig
from pwh.simulators.clarity.simulator import API_PREFIX, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.clarity.client import ClarityClient
from pwh.warehouse.connection import connect
from pwh.warehouse.load import UnitState
from pwh.warehouse.migrations import migrate

USER, PASSWORD = "lims-user", "pw-SECRET-skew-77"


def skewed_app(dataset: ClarityDataset, skew: dict[str, timedelta]) -> web.Application:
    app = build_app(dataset, SimulatorOptions(username=USER, password=PASSWORD, page_size=7))

    @web.middleware
    async def date(request: web.Request, handler):
        response = await handler(request)
        when = datetime.now(timezone.utc) + skew["by"]
        response.headers["Date"] = email.utils.format_datetime(when, usegmt=True)
        return response

    app.middlewares.append(date)
    return app


async def run(con, url: str, **kw):
    adapter = ClarityAdapter(ClarityClient.connect(url, username=USER, password=PASSWORD), account="a", **kw)
    async with adapter:
        return await run_sync(adapter, con, run_id=str(uuid.uuid4()), batch_size=8)


@pytest.mark.parametrize("hours", [2, -2])
async def test_a_change_after_a_run_with_a_skewed_server_clock_is_picked_up(tmp_path, hours):
    dataset = ClarityDataset(DatasetConfig(seed=41, n_projects=15))  # last-modified by the true clock
    skew = {"by": timedelta(0)}
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with serving(skewed_app(dataset, skew)) as root:
            url = root + API_PREFIX
            assert (await run(con, url)).units_new == 15
            # The skewed run lists a change, so its (skewed) mark is committed with it.
            dataset.mutate(seed=4, update_share=0.2)
            skew["by"] = timedelta(hours=hours)
            skewed = await run(con, url)
            skew["by"] = timedelta(0)
            change = dataset.mutate(seed=5, update_share=0.2)
            after = await run(con, url)
            loaded = {k for (k,) in con.execute("SELECT unit_key FROM pipeline.unit_state WHERE run_id = ?",
                                                 [after.run_id]).fetchall()}
            marks = [ListingMark.parse(c).as_of for (c,) in con.execute("SELECT cursor FROM pipeline.unit_state").fetchall()]
    finally:
        con.close()
    assert skewed.status == "success" and skewed.units_changed == 3
    assert len(change.updated) == 3 and after.status == "success" and set(change.updated) <= loaded
    assert max(marks) <= datetime.now(timezone.utc)


def test_a_watermark_written_in_the_future_is_brought_back_to_our_clock():
    # Marks a version that trusted the server's Date may have left in the future.
    future = datetime.now(timezone.utc) + timedelta(hours=2)
    known = {"P1": UnitState(ListingMark(future, "ab12cd34", 1, None).cursor(), False)}
    since = watermark(known, timedelta(minutes=5))
    assert since is not None and since <= datetime.now(timezone.utc) - timedelta(minutes=5)
