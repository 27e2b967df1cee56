"""Several RAYTeams accounts in two regions, OAuth tokens that expire every second while a
sync runs (renewed before expiry, or after a 401 mid-sync), a revoked refresh token on one
account, and no token or secret anywhere: real simulators on 127.0.0.1, a real DuckDB
file, real Prefect flow runs."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import duckdb
import orjson
import pytest
from typer.testing import CliRunner

from pwh.cli import app
from pwh.config import ConfigError, load_config
from pwh.flows.prefect_flows import sync_rayteams_accounts
from pwh.flows.rayteams_sync import AccountsFailedError
from pwh.schemas import rayteams as tables
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator, token_url
from pwh.sources.http import HttpSettings
from pwh.sources.rayteams.accounts import rayteams_account, rayteams_accounts
from pwh.sources.rayteams.client import RayteamsClient
from pwh.sources.rayteams.oauth import (
    OAuthCredentials,
    SecretNames,
    TokenRefusedError,
    api_base_url,
    token_endpoint,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@dataclass(frozen=True)
class Region:
    account: str
    region: str
    seed: int
    client_id: str
    client_secret: str
    refresh_token: str
    expires_in: int | None  # announced; None: the real life

    def dataset(self, n_projects: int) -> RayteamsDataset:
        return RayteamsDataset(DatasetConfig(seed=self.seed, n_projects=n_projects, region=self.region, invalid_records=1))

    def options(self, token_ttl_s: float = 2.0, **kw) -> SimulatorOptions:
        # 2 s: short enough to expire several times per sync, long enough that a renewed
        # token survives the event-loop stalls of a loaded 2-core test machine.
        return SimulatorOptions(
            token="static-token-never-used", client_id=self.client_id, client_secret=self.client_secret,
            refresh_tokens=frozenset({self.refresh_token}), region=self.region, token_ttl_s=token_ttl_s,
            expires_in=self.expires_in, **kw,
        )


# Seoul announces the real life (2 s): the client renews before expiry. Frankfurt claims an
# hour: the client only learns of expiry from 401s mid-sync and must renew then.
SEOUL = Region("seoul", "ap-northeast-2", 31, "cid-seoul-4c1a", "csecret-SEOUL-9e77b2", "rtoken-SEOUL-51f0d3", None)
FRANKFURT = Region("lab-fra", "eu-central-1", 32, "cid-fra-77d2", "csecret-FRA-03ac6e", "rtoken-FRA-a81c44", 3600)
REGIONS = (SEOUL, FRANKFURT)
SECRETS = tuple(s for r in REGIONS for s in (r.client_secret, r.refresh_token))


@dataclass
class Served:
    region: Region
    dataset: RayteamsDataset
    base_url: str


@asynccontextmanager
async def two_regions(n_projects: int = 40, latency_ms: float = 60.0) -> AsyncIterator[dict[str, Served]]:
    async with AsyncExitStack() as stack:
        served = {}
        for region in REGIONS:
            dataset = region.dataset(n_projects)
            base = await stack.enter_async_context(running_simulator(dataset, region.options(latency_ms=latency_ms)))
            served[region.account] = Served(region, dataset, base)
        yield served


def write_config(path: Path, served: dict[str, Served], monkeypatch) -> Path:
    lines = []
    for name, s in served.items():
        lines += [f"[rayteams.accounts.{name}]", f'region = "{s.region.region}"',
                  f'base_url = "{s.base_url}"', f'token_url = "{token_url(s.base_url)}"']
        if name == SEOUL.account:
            lines.append(f'client_id = "{s.region.client_id}"')  # the other one's comes from the environment
        lines.append("")
        prefix = "RAYTEAMS_" + name.upper().replace("-", "_")
        monkeypatch.setenv(f"{prefix}_CLIENT_SECRET", s.region.client_secret)
        monkeypatch.setenv(f"{prefix}_REFRESH_TOKEN", s.region.refresh_token)
    monkeypatch.setenv("RAYTEAMS_LAB_FRA_CLIENT_ID", FRANKFURT.client_id)
    config = path / "pwh.toml"
    config.write_text("\n".join(lines))
    return config


def counts_of(db: Path, account: str) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        counts = {
            t.name: con.execute(f"SELECT count(*) FROM {t.qualified_name} WHERE account = ?", [account]).fetchall()[0][0]
            for t in tables.TABLES
        }
        counts["rejected_records"] = con.execute(
            "SELECT count(*) FROM pipeline.rejected_records WHERE source = 'rayteams' AND account = ?", [account]
        ).fetchall()[0][0]
        return counts
    finally:
        con.close()


async def sim_json(base_url: str, path: str, body: dict | None = None) -> dict:
    root = base_url.removesuffix("/v1.0")
    async with aiohttp.ClientSession() as session:
        request = session.post(f"{root}{path}", data=orjson.dumps(body)) if body is not None else session.get(f"{root}{path}")
        async with request as response:
            return orjson.loads(await response.read())


def file_bytes(db: Path) -> bytes:
    content = db.read_bytes()
    wal = Path(str(db) + ".wal")
    return content + (wal.read_bytes() if wal.exists() else b"")


async def test_two_regions_with_expiring_tokens_load_every_record_and_leak_nothing(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "w.duckdb"
    async with two_regions() as served:
        config = write_config(tmp_path, served, monkeypatch)
        # Two requests in flight at 60 ms each: ≥ 2.4 s of fetching per account, tokens live 2 s.
        outcome = await sync_rayteams_accounts(config_path=str(config), db_path=str(db), concurrency=2, batch_size=10)
        stats = {name: await sim_json(s.base_url, "/_sim/stats") for name, s in served.items()}
        issued = {name: (await sim_json(s.base_url, "/_sim/secrets"))["access_tokens"] for name, s in served.items()}

    assert outcome["failed"] == {}
    assert set(outcome["accounts"]) == {SEOUL.account, FRANKFURT.account}
    for name, s in served.items():
        summary = outcome["accounts"][name]
        assert summary["status"] == "success" and summary["region"] == s.region.region
        assert counts_of(db, name) == s.dataset.expected_rows("aggregate"), name
        # Renewed mid-sync: more than one token issued, and the first sync saw no refusal
        # that was not followed by a renewal (every record loaded above).
        assert stats[name]["token_issued"] >= 2, stats[name]
        assert stats[name]["token_refused"] == 0
    # Frankfurt's tokens were only found expired by 401s (it claimed an hour): each renewal
    # followed a refusal, and each expiry cost one renewal and at most the two requests in
    # flight, each retried once with the renewed token.
    fra = stats[FRANKFURT.account]
    assert 1 <= fra["token_issued"] - 1 <= fra["expired"] <= 2 * (fra["token_issued"] - 1)
    assert stats[SEOUL.account]["expired"] <= 2 * (stats[SEOUL.account]["token_issued"] - 1)

    con = duckdb.connect(str(db), read_only=True)
    regions = dict(con.execute("SELECT account, string_agg(DISTINCT region) FROM rayteams.projects GROUP BY account").fetchall())
    runs = con.execute("SELECT account, status, run_id FROM pipeline.runs ORDER BY account").fetchall()
    # Every row carries its account; pipeline.accounts says where each account lives.
    where = dict(con.execute("SELECT account, region FROM pipeline.accounts WHERE source = 'rayteams'").fetchall())
    by_region = dict(con.execute(
        "SELECT a.region, count(*) FROM rayteams.histories h JOIN pipeline.accounts a "
        "ON a.source = 'rayteams' AND a.account = h.account GROUP BY a.region").fetchall())
    con.close()
    assert regions == {SEOUL.account: SEOUL.region, FRANKFURT.account: FRANKFURT.region}
    assert where == regions
    assert by_region == {r.region: served[r.account].dataset.expected_rows("aggregate")["histories"] for r in REGIONS}
    assert [(a, st) for a, st, _ in runs] == [(FRANKFURT.account, "success"), (SEOUL.account, "success")]
    assert runs[0][2] != runs[1][2]  # one ledger row per account

    # No access token, refresh token or client secret in the warehouse file, the logs, or
    # Prefect's records of the runs (parameters, states, logs).
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    tokens = [t for values in issued.values() for t in values]
    assert len(tokens) >= 4
    content = file_bytes(db)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        flow_runs = await client.read_flow_runs()
        prefect_logs = await client.read_logs()
    recorded = orjson.dumps([
        {"parameters": r.parameters, "state": r.state.message if r.state else None, "name": r.name} for r in flow_runs
    ]).decode() + "\n".join(entry.message for entry in prefect_logs)
    assert any(r.parameters.get("account") == SEOUL.account for r in flow_runs)  # the account's own run
    for secret in (*tokens, *SECRETS):
        assert secret.encode() not in content, "a secret is in the warehouse file"
        assert secret not in logged, "a secret is in the logs"
        assert secret not in recorded, "a secret is in Prefect's run records"


@pytest.mark.parametrize("expiry", ["seen-by-the-client-clock", "seen-as-401s"])
async def test_a_burst_of_requests_after_expiry_renews_the_token_once(expiry):
    """60 concurrent requests meet an expired token: one renewal, every request answered.
    The moment of expiry is the test's (a client clock it moves, or the simulator expiring
    its tokens), so the counts are exact on a loaded machine too."""
    region = Region("burst", "ap-northeast-1", 33, "cid-b", "csecret-b", "rtoken-b", None)
    dataset = region.dataset(30)
    now = [1000.0]
    async with running_simulator(dataset, region.options(token_ttl_s=3600, latency_ms=5)) as base:
        oauth = OAuthCredentials(
            account="burst", token_url=token_url(base), client_id=region.client_id,
            client_secret=region.client_secret, refresh_token=region.refresh_token,
            names=SecretNames("CID", "SECRET", "REFRESH"), clock=lambda: now[0],
        )
        async with RayteamsClient.connect(base, oauth=oauth, settings=HttpSettings(concurrency=64)) as client:
            projects = [p["_id"] for p in await client.list_projects()]
            for round_ in range(1, 4):
                payloads = await asyncio.gather(*(client.fetch_project(p) for p in projects))
                assert len(payloads) == 30 and all(p.records for p in payloads)
                assert oauth.renewals == round_  # 60 concurrent requests, one token
                if expiry == "seen-by-the-client-clock":
                    now[0] += 3600  # past the announced expires_in: renewed before use
                else:
                    await sim_json(base, "/_sim/oauth/expire", {})  # the client still thinks it valid
        stats = await sim_json(base, "/_sim/stats")
    assert stats["token_issued"] == 3
    if expiry == "seen-by-the-client-clock":
        assert stats["expired"] == 0  # renewed before the server could refuse it
    else:
        assert stats["expired"] >= 2  # each burst was refused...
        assert stats["unauthorized"] == stats["expired"]  # ...and each refused request retried with the new token


async def test_a_rotated_refresh_token_is_used_for_the_next_renewal_and_never_logged(caplog):
    region = Region("rot", "eu-west-3", 34, "cid-r", "csecret-r", "rtoken-ROT-original", None)
    now = [0.0]
    options = region.options(token_ttl_s=3600, rotate_refresh_tokens=True)
    async with running_simulator(region.dataset(2), options) as base:
        oauth = OAuthCredentials(
            account="rot", token_url=token_url(base), client_id=region.client_id,
            client_secret=region.client_secret, refresh_token=region.refresh_token,
            names=SecretNames("CID", "SECRET", "RAYTEAMS_ROT_REFRESH_TOKEN"), clock=lambda: now[0],
        )
        with caplog.at_level(logging.WARNING, logger="pwh.rayteams.oauth"):
            async with RayteamsClient.connect(base, oauth=oauth) as client:
                for _ in range(3):  # the original refresh token works once only
                    assert len(await client.list_projects()) == 2
                    now[0] += 7200
        issued = (await sim_json(base, "/_sim/secrets"))["access_tokens"]
    assert oauth.renewals == 3
    assert "RAYTEAMS_ROT_REFRESH_TOKEN still holds the old one" in caplog.text
    for secret in (*issued, region.refresh_token, region.client_secret):
        assert secret not in caplog.text


async def test_a_refused_refresh_token_fails_its_account_only(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    async with two_regions(n_projects=8, latency_ms=0) as served:
        config = write_config(tmp_path, served, monkeypatch)
        revoked = await sim_json(served[SEOUL.account].base_url, "/_sim/oauth/revoke", {"refresh_token": SEOUL.refresh_token})
        assert revoked == {"access_tokens_revoked": 0}
        with pytest.raises(AccountsFailedError) as failure:
            await sync_rayteams_accounts(config_path=str(config), db_path=str(db), batch_size=4)
    message = str(failure.value)
    assert "1 of 2 RAYTeams accounts failed" in message and "invalid_grant" in message
    assert "RAYTEAMS_SEOUL_REFRESH_TOKEN" in message
    outcome = failure.value.outcome
    assert set(outcome["failed"]) == {SEOUL.account} and set(outcome["accounts"]) == {FRANKFURT.account}
    assert counts_of(db, FRANKFURT.account) == served[FRANKFURT.account].dataset.expected_rows("aggregate")
    assert sum(counts_of(db, SEOUL.account).values()) == 0

    con = duckdb.connect(str(db), read_only=True)
    runs = dict(con.execute("SELECT account, status FROM pipeline.runs").fetchall())
    [error] = con.execute("SELECT error FROM pipeline.runs WHERE account = ?", [SEOUL.account]).fetchall()[0]
    con.close()
    assert runs == {SEOUL.account: "failed", FRANKFURT.account: "success"}
    assert error.startswith("TokenRefusedError:") and "RAYTEAMS_SEOUL_REFRESH_TOKEN" in error
    for secret in SECRETS:
        assert secret not in message and secret not in error

    # Only the named account: the good one alone succeeds.
    again = await _sync_one(tmp_path, served, FRANKFURT.account, db)
    assert again["failed"] == {} and again["accounts"][FRANKFURT.account]["units_unchanged"] == 8


async def _sync_one(tmp_path: Path, served: dict[str, Served], account: str, db: Path) -> dict:
    # The simulators are gone: a second pair with the same data (same seeds) on new ports.
    async with two_regions(n_projects=8, latency_ms=0) as again:
        config = tmp_path / "pwh.toml"
        old_root, new_root = (x[account].base_url.removesuffix("/v1.0") for x in (served, again))
        config.write_text(config.read_text().replace(old_root, new_root))
        return await sync_rayteams_accounts(config_path=str(config), db_path=str(db), account=account)


async def test_a_token_of_another_region_is_refused_with_a_clear_message():
    async with two_regions(n_projects=2, latency_ms=0) as served:
        seoul, fra = served[SEOUL.account], served[FRANKFURT.account]
        # Frankfurt's API, Seoul's token endpoint: a valid token, for the wrong region.
        oauth = OAuthCredentials(
            account="mixed", token_url=token_url(seoul.base_url), client_id=SEOUL.client_id,
            client_secret=SEOUL.client_secret, refresh_token=SEOUL.refresh_token,
            names=SecretNames("CID", "SECRET", "REFRESH"),
        )
        async with RayteamsClient.connect(fra.base_url, oauth=oauth) as client:
            with pytest.raises(Exception) as refused:
                await client.list_projects()
    assert "401" in str(refused.value) and "region" in str(refused.value)
    assert not isinstance(refused.value, TokenRefusedError)


def test_config_derives_region_hosts_and_refuses_secrets_and_typos(tmp_path):
    assert api_base_url("eu-west-2") == "https://api-eu-west-2-project.rayteams.com/v1.0"
    assert api_base_url("us-east-1", "-dev") == "https://api-us-east-1-project.rayteams-dev.com/v1.0"
    assert token_endpoint("ap-northeast-2") == "https://oauth-ap-northeast-2-development.rayteams.com/oauth2/token"
    assert token_endpoint("sa-east-1", stage="") == "https://oauth-sa-east-1.rayteams.com/oauth2/token"

    config = tmp_path / "pwh.toml"
    config.write_text('[rayteams.accounts.tokyo]\nregion = "ap-northeast-1"\n\n[schedules.rayteams]\ncron = "0 * * * *"\n')
    account = rayteams_account(load_config(config), "tokyo")
    assert account.base_url == "https://api-ap-northeast-1-project.rayteams.com/v1.0"
    assert account.token_url == "https://oauth-ap-northeast-1-development.rayteams.com/oauth2/token"
    assert account.refresh_token_variable == "RAYTEAMS_TOKYO_REFRESH_TOKEN"

    cases = {
        '[rayteams.accounts.a]\nregion = "mars-1"\n': "unknown region 'mars-1'",
        '[rayteams.accounts.a]\nregion = "eu-west-1"\nrefresh_token = "x"\n': "RAYTEAMS_A_REFRESH_TOKEN in the environment",
        '[rayteams.accounts.a]\nregion = "eu-west-1"\nclient_secret = "x"\n': "must not be in the file",
        '[rayteams.accounts.a]\nregoin = "eu-west-1"\n': "unknown key(s) regoin",
        '[rayteams.accounts.a]\nsandbox = "-x"\n': "region is required",
        '[rayteams.accounts.a-b]\nregion = "eu-west-1"\n[rayteams.accounts.a_b]\nregion = "eu-west-1"\n': "clash",
        "[rayteams.accounts.a\n": "not valid TOML",
    }
    for text, expected in cases.items():
        config.write_text(text)
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            rayteams_accounts(load_config(config))
    with pytest.raises(ConfigError, match="no RAYTeams account 'nope'"):
        config.write_text('[rayteams.accounts.a]\nregion = "eu-west-1"\n')
        rayteams_account(load_config(config), "nope")


def test_cli_without_base_url_or_accounts_says_what_to_configure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sync", "rayteams", "--db", str(tmp_path / "w.duckdb"), "--quiet"])
    assert result.exit_code == 1 and "[rayteams.accounts.<name>]" in result.output
    (tmp_path / "pwh.toml").write_text('[rayteams.accounts.a]\nregion = "eu-west-1"\n')
    result = CliRunner().invoke(app, ["sync", "rayteams", "--account", "b", "--quiet"])
    assert result.exit_code == 1 and "no RAYTeams account 'b'" in result.output
    result = CliRunner().invoke(app, ["sync", "rayteams", "--all-accounts", "--base-url", "http://x", "--quiet"])
    assert result.exit_code == 1 and "drop --base-url" in result.output
    assert os.environ.get("RAYTEAMS_A_REFRESH_TOKEN") is None


@contextmanager
def two_regions_in_a_thread(**kw):
    """The simulators on their own event loop, for the CLI (which runs its own with asyncio.run)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = AsyncExitStack()
    try:
        yield asyncio.run_coroutine_threadsafe(stack.enter_async_context(two_regions(**kw)), loop).result(30)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("how", ["--prefect", "--no-prefect"])  # subflow runs, or all in this process
def test_cli_syncs_every_account_then_reports_the_one_whose_refresh_token_was_revoked(tmp_path, monkeypatch, how):
    db = tmp_path / "w.duckdb"
    with two_regions_in_a_thread(n_projects=6, latency_ms=0) as served:
        config = write_config(tmp_path, served, monkeypatch)
        args = ["sync", "rayteams", "--config", str(config), "--db", str(db), "--quiet", "--batch-size", "4", how]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        assert f"account {SEOUL.account} ({SEOUL.region}):" in first.output
        assert f"account {FRANKFURT.account} ({FRANKFURT.region}):" in first.output
        assert first.output.count("success: 6 projects listed, 6 new") == 2

        revoke = served[SEOUL.account].base_url.removesuffix("/v1.0") + "/_sim/oauth/revoke"

        async def post() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.post(revoke, data=orjson.dumps({"refresh_token": SEOUL.refresh_token})) as r:
                    assert r.status == 200

        asyncio.run(post())
        second = CliRunner().invoke(app, [*args, "--full-refresh"])
    assert second.exit_code == 1, second.output
    assert f"account {SEOUL.account}: failed: TokenRefusedError" in second.output
    assert "RAYTEAMS_SEOUL_REFRESH_TOKEN" in second.output
    assert f"account {FRANKFURT.account} ({FRANKFURT.region}):" in second.output  # the other one ran
    for secret in SECRETS:
        assert secret not in first.output and secret not in second.output
