"""The source registry is the one list of sources; every other place that names sources is
made from it or checked against it here (issue 16)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema
from typer.testing import CliRunner

from pwh.choices import DemoSource
from pwh.cli import app
from pwh.demo import DEMO_SOURCES, EXAMPLE_QUERIES
from pwh.flows.prefect_yaml import prefect_yaml
from pwh.flows.registry import RAYTEAMS, SOURCES, flow_entrypoints, resolve, schedulable_flows
from pwh.flows.schedules import SCHEDULABLE_FLOWS
from pwh.flows.syncs import taking
from pwh.warehouse.catalog import all_tables, tables_of
from pwh.warehouse.marts import PROJECTS, VIEWS

ROOT = Path(__file__).resolve().parents[1]


def test_every_stream_feeds_tables_of_its_own_source_and_names_are_unique():
    for source in SOURCES:
        own = {table.name for table in tables_of(source.name)}
        names = [stream.name for stream in source.streams]
        assert len(names) == len(set(names)), source.name
        for stream in source.streams:
            assert stream.tables and set(stream.tables) <= own, (source.name, stream.name)


def test_every_flow_is_named_as_declared_and_takes_the_common_parameters():
    for source in SOURCES:
        for flow_name, target in source.flow_entrypoints().items():
            module, _, function = target.partition(":")
            flow = getattr(importlib.import_module(module), function)
            assert flow.name == flow_name
            # The Prefect flow wraps the very function a plain run calls (a pwh.flows module's own).
            assert flow.fn.__name__ == function and flow.fn.__module__.startswith("pwh.flows.")
            assert getattr(importlib.import_module(flow.fn.__module__), function) is flow.fn
        parameters = inspect.signature(source.flow_function(source.flow)).parameters
        assert list(parameters) == [p.name for p in source.flow_parameters()], source.name


def test_schedules_demo_and_choices_come_from_the_registry():
    assert SCHEDULABLE_FLOWS == schedulable_flows()
    assert {s.name for s in SOURCES} <= set(SCHEDULABLE_FLOWS)
    assert DEMO_SOURCES == (*(s.name for s in SOURCES), "all")
    assert tuple(choice.value for choice in DemoSource) == DEMO_SOURCES
    assert set(EXAMPLE_QUERIES) <= {s.name for s in SOURCES}


def test_prefect_yaml_is_made_from_the_registry_and_deploys_every_source():
    made = prefect_yaml()
    assert (ROOT / "prefect.yaml").read_text() == made, "run: python -m pwh.flows.prefect_yaml > prefect.yaml"
    project = yaml.safe_load(made)
    deployed = {d["entrypoint"].replace("/", ".").replace(".py:", ":") for d in project["deployments"]}
    assert deployed == {f"pwh.flows.prefect_flows:{s.flow}" for s in SOURCES}
    assert deployed <= set(flow_entrypoints().values())


def test_the_made_flows_take_the_parameters_the_hand_written_ones_took():
    """Every flow's parameters (names, JSON types, defaults, which are required), as Prefect
    documents and validates them, are those of the hand-written flows they replaced
    (recorded in tests/data/flow_parameters.json before the change, in their order):
    deployments and schedules that pass them keep working. Those a call could give by
    position keep their positions; the made flows take the others by name only, so a call
    written for the old order fails rather than binding a value to the wrong parameter."""
    recorded = json.loads((ROOT / "tests" / "data" / "flow_parameters.json").read_text())
    for source in SOURCES:
        for flow_name, target in source.flow_entrypoints().items():
            flow = resolve(target)
            schema = parameter_schema(flow).model_dump()
            now = {name: {k: v for k, v in p.items() if k not in ("position", "description", "title")}
                   for name, p in schema["properties"].items()}
            now["(required)"] = schema.get("required", [])
            assert now == recorded[flow_name], flow_name
            signature = inspect.signature(flow.fn).parameters.values()
            positional = [p.name for p in signature if p.kind is not inspect.Parameter.KEYWORD_ONLY]
            assert positional == list(recorded[flow_name])[:len(positional)], flow_name
            if flow_name != "stage-rayteams-shard" and flow_name != "sync-rayteams-sharded":
                assert len(positional) == 4, flow_name  # the rest by name only


def test_the_prefect_flows_describe_every_parameter():
    for source in SOURCES:
        for flow_name, target in source.flow_entrypoints().items():
            if flow_name in ("stage-rayteams-shard", "sync-rayteams-sharded"):
                continue  # written by hand, documented in their docstrings
            properties = parameter_schema(resolve(target)).model_dump()["properties"]
            undescribed = [name for name, p in properties.items() if not p.get("description")]
            assert not undescribed, (flow_name, undescribed)
    described = parameter_schema(resolve(RAYTEAMS.flow_entrypoints()["sync-rayteams"])).model_dump()["properties"]
    assert described["file_types"]["description"].startswith("Fetch only files of this type")


def test_a_made_flow_validates_and_binds_its_parameters_like_a_function():
    sync = RAYTEAMS.flow_function(RAYTEAMS.flow, prefect=True)
    validated = sync.validate_parameters({"base_url": "http://x", "concurrency": "8", "file_types": ["face"]})
    assert validated["concurrency"] == 8 and validated["file_types"] == ["face"]
    with pytest.raises(ParameterTypeError):
        sync.validate_parameters({"base_url": "http://x", "concurrency": "many"})
    with pytest.raises(TypeError, match="no_such"):
        asyncio.run(RAYTEAMS.flow_function(RAYTEAMS.flow)(base_url="http://x", no_such=1))
    with pytest.raises(TypeError, match="base_url"):
        asyncio.run(RAYTEAMS.flow_function(RAYTEAMS.flow)())
    # Past the first four, by name only: the old positions of the options no longer hold.
    with pytest.raises(TypeError, match="positional"):
        asyncio.run(RAYTEAMS.flow_function(RAYTEAMS.flow)("http://x", "w.duckdb", "default", "incremental",
                                                          "aggregate"))


def test_every_source_has_its_tables_migrated_documented_and_sync_commands():
    schemas = {table.schema for table in all_tables()}
    reference = (ROOT / "docs" / "tables.md").read_text()
    readme = (ROOT / "README.md").read_text()
    runner = CliRunner()
    for source in SOURCES:
        assert source.name in schemas
        assert f"## {source.name}." in reference or f"`{source.name}." in reference, source.name
        assert f"pwh sync {source.name}" in readme, source.name
        helped = runner.invoke(app, ["sync", source.name, "--help"], terminal_width=200)
        assert helped.exit_code == 0 and "--exclude" in helped.output and "--select" in helped.output
        simulate = runner.invoke(app, ["simulate", source.name, "--help"], terminal_width=200)
        assert simulate.exit_code == 0, source.name
    # The cross-source project mart stacks one part per source; every part names a registered source.
    assert {part.source for part in PROJECTS.parts} == {s.name for s in SOURCES}
    assert {part.source for view in VIEWS for part in view.parts} <= {s.name for s in SOURCES}


def test_pwh_sources_lists_every_source_and_stream():
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "sources"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for source in SOURCES:
        assert done.stdout.count(f"{source.name}: {source.title}.") == 1
        for stream in source.streams:
            assert f"stream {stream.name} " in done.stdout


def test_an_unknown_stream_fails_in_one_line_before_anything_slow():
    done = subprocess.run(
        [sys.executable, "-m", "pwh.cli", "sync", "openproject", "--base-url", "http://127.0.0.1:9",
         "--exclude", "work_packages,wiki"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "OPENPROJECT_API_KEY": "k"},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "pwh: error: openproject has no stream wiki; its streams are work_packages, versions, categories, "
        "types, memberships, custom_fields, statuses, users (`pwh sources` lists them)"]


def test_one_package_is_installed_and_the_old_top_level_names_are_gone():
    """Everything lives under `pwh`: installing project-warehouse puts no generic top-level
    module (sources, flows, schemas…) into site-packages, where it could shadow another's."""
    from importlib.metadata import distribution
    from importlib.util import find_spec

    top_level = (distribution("project-warehouse").read_text("top_level.txt") or "").split()
    assert top_level == ["pwh"]
    for old in ("sources", "transforms", "schemas", "warehouse", "flows"):
        assert not (ROOT / old).exists()
        spec = find_spec(old)
        assert spec is None or not str(spec.origin or "").startswith(str(ROOT)), old


def test_each_call_of_a_made_function_gets_its_own_copy_of_a_list_default():
    seen = []

    async def run(parameters):
        parameters["order"].append("mutated")
        seen.append(list(parameters["order"]))
        return {}

    signature = inspect.Signature([inspect.Parameter("order", inspect.Parameter.KEYWORD_ONLY, default=["id"])])
    made = taking(signature, run, name="made", doc="")
    asyncio.run(made())
    asyncio.run(made())
    assert seen == [["id", "mutated"], ["id", "mutated"]] and signature.parameters["order"].default == ["id"]
