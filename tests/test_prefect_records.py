"""What a flow run leaves on the Prefect server, read back through Prefect's own client: a
summary artifact with the run's counts (a failed run's too) and the engine's log lines in
the flow run's logs; never the token, and the console sees no more than before."""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from flows.incoplax import sync_incoplax
from sources.errors import AuthError
from sources.incoplax.dataset import DatasetConfig, IncoplaxDataset
from sources.incoplax.simulator import SimulatorOptions, build_app
from sources.simulation import serving

pytestmark = pytest.mark.usefixtures("prefect_harness")

TOKEN = "records-SECRET-token-41c7"
WRONG = "records-WRONG-token-93aa"


async def records_of(flow_run_id: str) -> tuple[list, list[str]]:
    await APILogHandler.aflush()  # logs reach the server in batches
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return artifacts, [entry.message for entry in logs]


async def test_a_flow_run_carries_its_counts_and_the_engines_log_lines(tmp_path: Path, monkeypatch, caplog):
    dataset = IncoplaxDataset(DatasetConfig(seed=41, n_projects=14))
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("INCOPLAX_TOKEN", TOKEN)
    caplog.set_level(logging.WARNING)
    async with serving(build_app(dataset, SimulatorOptions(token=TOKEN)), any_method=True) as url:
        summary = await sync_incoplax(base_url=url, db_path=str(db), account="Lab_Seoul", page_size=5, batch_size=4)
        monkeypatch.setenv("INCOPLAX_TOKEN", WRONG)
        with pytest.raises(AuthError):
            await sync_incoplax(base_url=url, db_path=str(db), account="Lab_Seoul", page_size=5)
    assert summary["status"] == "success" and summary["units_new"] == 14

    artifacts, messages = await records_of(summary["run_id"])
    [artifact] = artifacts
    assert artifact.key == "sync-incoplax-lab-seoul" and artifact.type == "markdown"
    assert "### Sync incoplax/Lab_Seoul: success" in artifact.data
    assert "| projects listed | 14 |" in artifact.data and "| new | 14 |" in artifact.data
    assert "| rows loaded: `projects` | 14 |" in artifact.data
    assert any(f"incoplax/Lab_Seoul incremental run {summary['run_id']}: success" in m for m in messages), messages

    con = duckdb.connect(str(db), read_only=True)
    try:
        [(failed_run,)] = con.execute("SELECT run_id FROM pipeline.runs WHERE status = 'failed'").fetchall()
    finally:
        con.close()
    artifacts, messages = await records_of(failed_run)
    [artifact] = [a for a in artifacts if a.type == "markdown"]  # beside Prefect's own result record
    assert "### Sync incoplax/Lab_Seoul: failed" in artifact.data and "| projects listed | 0 |" in artifact.data
    assert any(f"run {failed_run}: failed" in m for m in messages), messages
    everything = artifact.data + "\n".join(messages)
    assert TOKEN not in everything and WRONG not in everything
    # The console (the root logger's handlers) saw no INFO line of ours: only what it saw before.
    assert not [r for r in caplog.records if r.name.startswith("pwh") and r.levelno < logging.WARNING]
    # And once the runs are over, the pwh loggers are as they were.
    assert logging.getLogger("pwh").propagate and not logging.getLogger("pwh").handlers
