"""``mcp-registry import-servers``: the file-based registry's configs into ``mcpservers``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from packages.database.connection import MongoClient
from registry.auth import UserContext
from registry.cli import build_parser, main
from registry.commands.import_servers import run_import
from registry.config import Settings
from registry.db_session import open_database
from registry.services.importer import sanitize_title, server_name_from_path, status_for
from registry.services.servers import toggle_server
from tests.conftest import FIXTURES, TEST_CREDS_IV, TEST_CREDS_KEY, TEST_JWT_SECRET

FILE_REGISTRY = FIXTURES / "file-registry"
REPO_ROOT = Path(__file__).resolve().parents[3]
AUTHOR = "65a0000000000000000000a1"
IMPORTED = ["currenttime", "fininfo", "mcpgw", "realserverfaketools"]


async def _run(settings: Settings, directory: Path, *, dry_run: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    status = await run_import(
        settings=settings, directory=directory, author_id=AUTHOR, dry_run=dry_run, out=out
    )
    return status, out.getvalue()


async def _stored(mongo_client: MongoClient, settings: Settings) -> dict[str, dict[str, Any]]:
    cursor = mongo_client[settings.mongo_db]["mcpservers"].find({})
    return {doc["serverName"]: doc async for doc in cursor}


async def _audit(mongo_client: MongoClient, settings: Settings) -> list[dict[str, Any]]:
    cursor = mongo_client[settings.mongo_db]["audit_logs"].find({})
    return [doc async for doc in cursor]


def _copy(tmp_path: Path, *names: str, state: dict[str, bool] | None = None) -> Path:
    directory = tmp_path / "configs"
    directory.mkdir()
    for name in names:
        shutil.copy(FILE_REGISTRY / name, directory / name)
    if state is not None:
        (directory / "server_state.json").write_text(json.dumps(state), encoding="utf-8")
    return directory


async def test_import_servers_imports_fixture_directory(
    settings: Settings, mongo_client: MongoClient
) -> None:
    status, output = await _run(settings, FILE_REGISTRY)

    assert status == 1
    lines = output.splitlines()
    assert lines[-1] == "imported=4 skipped=0 failed=1"
    assert lines[0] == (
        "failed   auth_server.json: not a server config (missing server_name, path)"
    )
    assert "imported currenttime.json -> currenttime" in lines
    stored = await _stored(mongo_client, settings)
    assert sorted(stored) == IMPORTED
    assert {doc["status"] for doc in stored.values()} == {"inactive"}
    # Every tool_list entry is in the catalog; a switched-off server exposes none of them.
    assert await _catalog_counts(mongo_client, settings) == {
        "currenttime": 1,
        "fininfo": 2,
        "mcpgw": 5,
        "realserverfaketools": 6,
    }
    assert {doc["numTools"] for doc in stored.values()} == {0}


async def _catalog_counts(mongo_client: MongoClient, settings: Settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for tool in mongo_client[settings.mongo_db]["tools"].find({}):
        assert (tool["exposureState"], tool["registrationState"]) == ("active", "selected")
        counts[tool["serverName"]] = counts.get(tool["serverName"], 0) + 1
    return counts


async def test_import_servers_catalog_survives_enabling_a_disabled_server(
    settings: Settings, mongo_client: MongoClient, tmp_path: Path
) -> None:
    """Enabling an imported, switched-off server emptied its tools: the import had not
    entered them in the catalog, from which the document's exposed tools are recomputed."""
    await _run(settings, _copy(tmp_path, "mcpgw.json", state={"/mcpgw": False}))
    server_id = (await _stored(mongo_client, settings))["mcpgw"]["_id"]

    async with open_database(settings):  # the import closed its own connection
        await toggle_server(
            principal=UserContext(user_id=AUTHOR, role="admin"),
            server_id=str(server_id),
            enabled=True,
        )

    doc = (await _stored(mongo_client, settings))["mcpgw"]
    source = json.loads((FILE_REGISTRY / "mcpgw.json").read_text())
    assert doc["status"] == "active"
    assert doc["numTools"] == 5
    assert doc["config"]["tools"] == ",".join(tool["name"] for tool in source["tool_list"])
    runs = await mongo_client[settings.mongo_db]["sync_runs"].find({}).to_list()
    assert [(run["trigger"], run["outcome"], run["counts"]["added"]) for run in runs] == [
        ("import", "success", 5)
    ]


async def test_import_servers_documents_have_shared_schema_shape(
    settings: Settings, mongo_client: MongoClient, tmp_path: Path
) -> None:
    enabled = {"/currenttime": True, "/mcpgw": True}
    await _run(settings, _copy(tmp_path, "currenttime.json", "mcpgw.json", state=enabled))

    doc = (await _stored(mongo_client, settings))["currenttime"]

    assert set(doc) == {
        "_id",
        "serverName",
        "config",
        "author",
        "scope",
        "status",
        "path",
        "proxyPassUrl",
        "tags",
        "numTools",
        "numStars",
        "createdAt",
        "updatedAt",
        "__v",
    }
    assert doc["author"] == ObjectId(AUTHOR)
    assert doc["scope"] == "shared_app"
    assert doc["path"] == "/mcp/currenttime"
    assert doc["proxyPassUrl"] == "http://currenttime-server:8000/currenttime/"
    assert doc["tags"] == []
    assert doc["numTools"] == 1
    assert doc["numStars"] == 0
    assert doc["__v"] == 0
    assert isinstance(doc["createdAt"], datetime)
    assert isinstance(doc["updatedAt"], datetime)
    source = json.loads((FILE_REGISTRY / "currenttime.json").read_text())
    tool = source["tool_list"][0]
    assert doc["config"] == {
        "title": "Current Time API",
        "description": source["description"],
        "type": "streamable-http",
        "url": "http://currenttime-server:8000/currenttime/",
        "tools": "current_time_by_timezone",
        "toolFunctions": {
            "current_time_by_timezone_mcp_currenttime": {
                "type": "function",
                "function": {
                    "name": "current_time_by_timezone_mcp_currenttime",
                    "description": tool["parsed_description"]["main"],
                    "parameters": tool["schema"],
                },
            }
        },
    }
    mcpgw = (await _stored(mongo_client, settings))["mcpgw"]
    assert mcpgw["config"]["title"] == "MCP Gateway Tools"
    assert mcpgw["tags"] == ["registry", "management"]
    assert mcpgw["config"]["tools"].split(",") == [
        t["name"] for t in json.loads((FILE_REGISTRY / "mcpgw.json").read_text())["tool_list"]
    ]


async def test_import_servers_writes_one_audit_entry_per_server(
    settings: Settings, mongo_client: MongoClient
) -> None:
    await _run(settings, FILE_REGISTRY)

    stored = await _stored(mongo_client, settings)
    audited = await _audit(mongo_client, settings)
    entries = [entry for entry in audited if entry["action"] == "import"]
    catalogued = [entry for entry in audited if entry["action"] == "sync"]

    assert len(audited) == len(entries) + len(catalogued)
    assert sorted(entry["entity_id"] for entry in entries) == sorted(
        doc["_id"] for doc in stored.values()
    )
    # The tool lists entered the catalog: one sync entry per server, naming the tools added.
    mcpgw = next(e for e in catalogued if e["entity_id"] == stored["mcpgw"]["_id"])
    assert mcpgw["changes"]["after"]["trigger"] == "import"
    assert len(mcpgw["changes"]["after"]["added"]) == 5
    assert {entry["entity_type"] for entry in audited} == {"server"}
    assert {entry["user_id"] for entry in entries} == {ObjectId(AUTHOR)}
    first = next(e for e in entries if e["entity_id"] == stored["fininfo"]["_id"])
    assert first["changes"]["before"] is None
    assert first["changes"]["after"]["serverName"] == "fininfo"


async def test_import_servers_second_run_skips_everything(
    settings: Settings, mongo_client: MongoClient
) -> None:
    await _run(settings, FILE_REGISTRY)
    before = await _stored(mongo_client, settings)

    status, output = await _run(settings, FILE_REGISTRY)

    assert status == 1
    assert output.splitlines()[-1] == "imported=0 skipped=4 failed=1"
    assert "skipped  mcpgw.json -> mcpgw: already exists" in output.splitlines()
    assert await _stored(mongo_client, settings) == before
    actions = Counter(entry["action"] for entry in await _audit(mongo_client, settings))
    assert actions == {"import": 4, "sync": 4}  # from the first run only


async def test_import_servers_status_from_state_file(
    settings: Settings, mongo_client: MongoClient, tmp_path: Path
) -> None:
    directory = _copy(
        tmp_path,
        "currenttime.json",
        "fininfo.json",
        "mcpgw.json",
        state={"/currenttime": True, "/fininfo/": False},
    )

    status, output = await _run(settings, directory)

    assert status == 0
    assert output.splitlines()[-1] == "imported=3 skipped=0 failed=0"
    stored = await _stored(mongo_client, settings)
    assert stored["currenttime"]["status"] == "active"
    assert stored["fininfo"]["status"] == "inactive"
    # Absent from the state file: the file-based registry did not serve it.
    assert stored["mcpgw"]["status"] == "inactive"


async def test_import_servers_bad_files_reported_rest_imported(
    settings: Settings, mongo_client: MongoClient, tmp_path: Path
) -> None:
    directory = _copy(tmp_path, "currenttime.json")
    (directory / "broken.json").write_text("{not json", encoding="utf-8")
    (directory / "list.json").write_text("[1, 2]", encoding="utf-8")
    bad_path = json.loads((FILE_REGISTRY / "fininfo.json").read_text())
    bad_path["path"] = "/../weird path"
    (directory / "badpath.json").write_text(json.dumps(bad_path), encoding="utf-8")
    (directory / "notes.txt").write_text("ignored", encoding="utf-8")

    status, output = await _run(settings, directory)

    assert status == 1
    lines = output.splitlines()
    assert lines[-1] == "imported=1 skipped=0 failed=3"
    assert lines[0].startswith("failed   badpath.json: path '/../weird path' does not give")
    assert lines[1].startswith("failed   broken.json: invalid JSON (")
    assert lines[3] == "failed   list.json: not a server config (the file is not a JSON object)"
    assert sorted(await _stored(mongo_client, settings)) == ["currenttime"]


async def test_import_servers_dry_run_writes_nothing(
    settings: Settings, mongo_client: MongoClient
) -> None:
    status, output = await _run(settings, FILE_REGISTRY, dry_run=True)

    assert status == 1
    assert output.splitlines()[-1] == (
        "imported=4 skipped=0 failed=1 (dry run: nothing was written)"
    )
    assert await _stored(mongo_client, settings) == {}
    assert await _audit(mongo_client, settings) == []


async def test_import_servers_command_line_exit_status_and_output(
    settings: Settings, mongo_client: MongoClient, tmp_path: Path
) -> None:
    """The installed command end to end: configuration from the environment, real exit code."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "MONGO_URI": settings.mongo_uri.get_secret_value() if settings.mongo_uri else "",
        "MONGO_DB": settings.mongo_db,
        "CREDS_KEY": TEST_CREDS_KEY,
        "CREDS_IV": TEST_CREDS_IV,
        "JWT_SECRET": TEST_JWT_SECRET,
        "REGISTRY_DATA_DIR": str(tmp_path),
        "REGISTRY_LOG_FORMAT": "json",
    }
    directory = _copy(tmp_path, "currenttime.json", "fininfo.json")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mcp-registry"),
        "import-servers",
        str(directory),
        "--author",
        AUTHOR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().splitlines() == [
        "imported currenttime.json -> currenttime",
        "imported fininfo.json -> fininfo",
        "imported=2 skipped=0 failed=0",
    ]
    assert b"server_imported" in stderr
    assert sorted(await _stored(mongo_client, settings)) == ["currenttime", "fininfo"]


def test_import_servers_rejects_malformed_author(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import-servers", str(FILE_REGISTRY), "--author", "not-an-id"])

    assert exited.value.code == 2
    assert "must be a 24-hex-digit user id" in capsys.readouterr().err


def test_import_servers_registered_in_cli() -> None:
    import registry.commands  # noqa: F401

    args = build_parser().parse_args(
        ["import-servers", "configs", "--author", AUTHOR.upper(), "--dry-run"]
    )

    assert args.directory == Path("configs")
    assert args.author == AUTHOR
    assert args.dry_run is True


@pytest.mark.parametrize(
    ("human", "expected"),
    [
        ("Current Time API", "Current Time API"),
        ("Real-Server (Fake) Tools!", "Real Server Fake Tools"),
        ("  ***  ", "fallback name"),
    ],
)
def test_sanitize_title_matches_schema_pattern(human: str, expected: str) -> None:
    assert sanitize_title(human, fallback="fallback_name") == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/currenttime", "currenttime"), ("/team/tools/", "team-tools"), ("fin_info", "fin_info")],
)
def test_server_name_from_path_valid(path: str, expected: str) -> None:
    assert server_name_from_path(path) == expected


@pytest.mark.parametrize("path", ["/", "/-lead", "/a b", "/" + "x" * 65])
def test_server_name_from_path_invalid(path: str) -> None:
    from registry.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="does not give a valid serverName"):
        server_name_from_path(path)


def test_status_for_matches_trailing_slash_variants() -> None:
    state = {"/a/": True, "/b": False}

    assert status_for("/a", state) == "active"
    assert status_for("/b/", state) == "inactive"
    assert status_for("/c", state) == "inactive"
