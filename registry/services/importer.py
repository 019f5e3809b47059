"""One-time import of the file-based registry's server configs into ``mcpservers``.

The pre-database registry kept one JSON file per server (``server_name``, ``description``,
``path``, ``proxy_pass_url``, ``tags``, ``num_tools``, ``num_stars``, ``tool_list``, optional
``transport``) and a ``server_state.json`` mapping each path to ``true`` (enabled) or
``false``. Parsing and mapping are pure functions; ``import_directory`` writes.

Decisions (docs/admin.md repeats them):

- ``serverName`` comes from the file's ``path`` (``/currenttime`` → ``currenttime``; inner
  slashes become ``-``) and must match ``^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$``.
- ``config.title`` is the human ``server_name`` reduced to ``[a-zA-Z0-9 ]`` (the shared
  schema's pattern).
- ``status``: enabled → ``active``, disabled → ``inactive``, and a path missing from the
  state file → ``inactive``, as the file-based registry treated it (it served only servers
  marked enabled). Paths are matched with and without a trailing slash, as it did.
- ``numTools`` is the number of tools in ``tool_list`` (what is stored), not the file's
  ``num_tools`` counter.
- A server whose ``serverName`` exists is skipped, so the import can be re-run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from bson import ObjectId
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from packages.models import MCPServer
from packages.models.tools import ExposureState
from registry.auth import UserContext
from registry.errors import InvalidRequestError
from registry.gateway import DiscoveredTool, to_tool_function, tool_function_name
from registry.services.audit import record_audit
from registry.services.catalog_sync import sync_server_tools
from registry.services.server_documents import TOOLS_SEPARATOR

log = structlog.get_logger("registry.importer")

STATE_FILE = "server_state.json"
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NOT_TITLE = re.compile(r"[^a-zA-Z0-9 ]+")
_REQUIRED = ("server_name", "path", "proxy_pass_url")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

Outcome = Literal["imported", "skipped", "failed"]


@dataclass(frozen=True)
class ImportResult:
    """What happened to one file (``server_name`` is the derived serverName, if any)."""

    file: str
    outcome: Outcome
    server_name: str | None = None
    reason: str | None = None


@dataclass
class ImportReport:
    results: list[ImportResult] = field(default_factory=list)
    dry_run: bool = False

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def has_failures(self) -> bool:
        return self.count("failed") > 0


def read_state(directory: Path) -> dict[str, bool]:
    """The ``server_state.json`` map (path → enabled), or empty when there is none.

    Raises:
        InvalidRequestError: the state file is not a JSON object of booleans.
    """
    path = directory / STATE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"{STATE_FILE} is not valid JSON") from exc
    if not isinstance(data, dict) or not all(isinstance(v, bool) for v in data.values()):
        raise InvalidRequestError(f"{STATE_FILE} must map paths to true/false")
    return {str(k): v for k, v in data.items()}


def server_name_from_path(path: str) -> str:
    """``/currenttime`` → ``currenttime``; raises InvalidRequestError if not a valid name."""
    name = path.strip().strip("/").replace("/", "-")
    if not SERVER_NAME.match(name):
        raise InvalidRequestError(
            f"path {path!r} does not give a valid serverName "
            "(letters, digits, '_' and '-', at most 64, starting with a letter or digit)"
        )
    return name


def sanitize_title(human_name: str, *, fallback: str) -> str:
    """Reduce a display name to the shared schema's title alphabet ``[a-zA-Z0-9 ]``."""
    title = " ".join(_NOT_TITLE.sub(" ", human_name).split())
    return title or " ".join(_NOT_TITLE.sub(" ", fallback).split())


def status_for(path: str, state: Mapping[str, bool]) -> str:
    """``active`` when the state file marks the path enabled, otherwise ``inactive``."""
    for candidate in (path, path.rstrip("/"), path.rstrip("/") + "/"):
        if candidate in state:
            return "active" if state[candidate] else "inactive"
    return "inactive"


def _transport(raw: Mapping[str, Any]) -> str:
    declared = raw.get("transport")
    supported = raw.get("supported_transports")
    if declared == "sse" or (isinstance(supported, list) and supported == ["sse"]):
        return "sse"
    return "streamable-http"


def parse_tool_list(tools: Any) -> list[DiscoveredTool]:
    """The file's ``tool_list`` in file order, as if the upstream had listed it.

    Raises:
        InvalidRequestError: the list or one of its entries is unusable; the message says why.
    """
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequestError("tool_list must be a list")
    parsed_tools: list[DiscoveredTool] = []
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequestError("every tool_list entry needs a non-empty name")
        parsed = tool.get("parsed_description")
        description = parsed.get("main") if isinstance(parsed, dict) else tool.get("description")
        schema = tool.get("schema")
        if schema is None:
            schema = dict(_EMPTY_SCHEMA)
        if not isinstance(schema, dict):
            raise InvalidRequestError(f"tool {tool['name']!r} has a schema that is not an object")
        if any(known.name == tool["name"] for known in parsed_tools):
            raise InvalidRequestError(f"tool {tool['name']!r} is listed twice")
        parsed_tools.append(
            DiscoveredTool(
                name=tool["name"],
                description=description if isinstance(description, str) and description else None,
                input_schema=schema,
                output_schema=None,
                annotations=None,
                title=None,
            )
        )
    return parsed_tools


def map_server_config(
    raw: Any, *, state: Mapping[str, bool], author: ObjectId, now: datetime
) -> dict[str, Any]:
    """Map one file-registry config to an ``mcpservers`` document body (camelCase keys).

    The body has the shared schema's shape (design 004 storage examples): nested ``config``
    with ``type``, ``url``, ``title``, ``description``, ``tools`` and ``toolFunctions``, and
    ``scope: shared_app``. ``capabilities`` stays unset: nothing was discovered yet.

    Raises:
        InvalidRequestError: the value is not a server config or a field is unusable; the
            message says which.
    """
    if not isinstance(raw, dict):
        raise InvalidRequestError("not a server config (the file is not a JSON object)")
    missing = [name for name in _REQUIRED if not isinstance(raw.get(name), str) or not raw[name]]
    if missing:
        raise InvalidRequestError(f"not a server config (missing {', '.join(missing)})")
    path: str = raw["path"]
    server_name = server_name_from_path(path)
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidRequestError("tags must be a list of strings")
    tools = parse_tool_list(raw.get("tool_list"))
    functions = {
        tool_function_name(tool.name, server_name): to_tool_function(tool, server_name)
        for tool in tools
    }
    stars = raw.get("num_stars")
    config: dict[str, Any] = {
        "title": sanitize_title(raw["server_name"], fallback=server_name),
        "type": _transport(raw),
        "url": raw["proxy_pass_url"],
        "tools": TOOLS_SEPARATOR.join(tool.name for tool in tools),
        "toolFunctions": functions,
    }
    if isinstance(raw.get("description"), str):
        config["description"] = raw["description"]
    return {
        "serverName": server_name,
        "config": config,
        "author": author,
        "scope": "shared_app",
        "status": status_for(path, state),
        "path": f"/mcp/{server_name}",
        "proxyPassUrl": raw["proxy_pass_url"],
        "tags": tags,
        "numTools": len(functions),
        "numStars": stars if isinstance(stars, int) and stars >= 0 else 0,
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
    }


@dataclass(frozen=True)
class ConfigFile:
    """One ``*.json`` file of the directory: its parsed content, or why it could not be read."""

    name: str
    content: Any = None
    error: str | None = None


def read_directory(directory: Path) -> tuple[dict[str, bool], list[ConfigFile]]:
    """The state map and every ``*.json`` config file (sorted by name, not recursive).

    Raises:
        InvalidRequestError: ``directory`` is not a directory or the state file is unusable.
    """
    if not directory.is_dir():
        raise InvalidRequestError(f"{directory} is not a directory")
    files: list[ConfigFile] = []
    for file in sorted(directory.glob("*.json")):
        if file.name == STATE_FILE or not file.is_file():
            continue
        try:
            files.append(ConfigFile(file.name, json.loads(file.read_text(encoding="utf-8"))))
        except UnicodeDecodeError:
            files.append(ConfigFile(file.name, error="not UTF-8 text"))
        except ValueError as exc:
            files.append(ConfigFile(file.name, error=f"invalid JSON ({exc})"))
    return read_state(directory), files


async def _import_one(
    file: ConfigFile,
    *,
    state: Mapping[str, bool],
    actor: UserContext,
    dry_run: bool,
    default_exposure: ExposureState,
) -> ImportResult:
    if file.error is not None:
        return ImportResult(file=file.name, outcome="failed", reason=file.error)
    author = ObjectId(actor.user_id)
    try:
        body = map_server_config(file.content, state=state, author=author, now=datetime.now(UTC))
        document = MCPServer.model_validate(body)
    except InvalidRequestError as exc:
        return ImportResult(file=file.name, outcome="failed", reason=exc.message)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        return ImportResult(
            file=file.name, outcome="failed", reason=f"invalid fields: {', '.join(fields)}"
        )
    name = document.server_name
    if await MCPServer.find_one({"serverName": name}) is not None:
        return ImportResult(
            file=file.name, outcome="skipped", server_name=name, reason="already exists"
        )
    if dry_run:
        return ImportResult(file=file.name, outcome="imported", server_name=name)
    try:
        await document.insert()
    except DuplicateKeyError:
        # A concurrent import inserted the same name, or another server owns the path.
        if await MCPServer.find_one({"serverName": name}) is not None:
            return ImportResult(
                file=file.name, outcome="skipped", server_name=name, reason="already exists"
            )
        return ImportResult(
            file=file.name,
            outcome="failed",
            server_name=name,
            reason=f"path {document.path} is used by another server",
        )
    # The file's tool list is the server's first discovery: the catalog (which governs what
    # the gateway and the server document expose) must know these tools, or the next
    # recompute (a toggle, say) would empty the document's tools.
    await sync_server_tools(
        server=document,
        discovered=parse_tool_list(file.content.get("tool_list")),
        trigger="import",
        actor_id=actor.user_id,
        default_exposure=default_exposure,
    )
    await record_audit(
        action="import",
        entity_type="server",
        entity_id=str(document.id),
        actor=actor,
        after=document.model_dump(by_alias=True, mode="json", exclude_none=True),
    )
    log.info("server_imported", server_id=str(document.id), server_name=name, file=file.name)
    return ImportResult(file=file.name, outcome="imported", server_name=name)


async def import_directory(
    *,
    directory: Path,
    author_id: str,
    dry_run: bool,
    default_exposure: ExposureState = "active",
) -> ImportReport:
    """Import every ``*.json`` server config in ``directory`` (not recursive).

    Each file is handled on its own: a bad file is reported as failed and the others are
    still imported; an existing ``serverName`` is reported as skipped. ``author_id`` (a
    24-hex ObjectId) becomes the servers' ``author`` and the audit actor (as an admin). Each
    server's ``tool_list`` enters the tool catalog (a sync run with trigger ``import``; new tools
    get ``default_exposure``). With ``dry_run`` nothing is written and "imported" means "would
    be imported".

    Raises:
        InvalidRequestError: ``directory`` is not a directory, ``author_id`` is not an
            ObjectId, or ``server_state.json`` is unreadable.
    """
    if not ObjectId.is_valid(author_id) or len(author_id) != 24:
        raise InvalidRequestError("--author must be a 24-hex-digit user id (ObjectId)")
    actor = UserContext(user_id=author_id, role="admin", username="import-servers")
    state, files = await asyncio.to_thread(read_directory, directory)
    report = ImportReport(dry_run=dry_run)
    for file in files:
        result = await _import_one(
            file, state=state, actor=actor, dry_run=dry_run, default_exposure=default_exposure
        )
        if result.outcome == "failed":
            log.warning("server_import_failed", file=file.name, reason=result.reason)
        report.results.append(result)
    log.info(
        "servers_import_finished",
        imported=report.count("imported"),
        skipped=report.count("skipped"),
        failed=report.count("failed"),
        dry_run=dry_run,
    )
    return report
