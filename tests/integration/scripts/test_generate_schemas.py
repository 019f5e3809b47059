"""``scripts/generate_schemas.py`` end to end: a local HTTP release server, no network, no MongoDB.

Every run writes to a temporary ``--output-dir``; the committed ``packages/models`` is only
read (``--check`` on it, or copied before tampering).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from beanie.odm.utils.encoder import Encoder

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "generate_schemas.py"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "jarvis-schemas"
COMMITTED_MODELS = REPO_ROOT / "packages" / "models"
SERVER_EXAMPLES = ("mcpserver-github", "mcpserver-sse-error", "mcpserver-tavily")
TOKEN_EXAMPLE = "token-mcp-oauth-access"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@pytest.fixture(scope="module")
def schema_source() -> Iterator[str]:
    """Serve tests/fixtures/jarvis-schemas like a release download URL."""
    handler = functools.partial(_QuietHandler, directory=str(FIXTURES))
    # The constructor binds and listens, so clients queue from here on: no need to wait for the
    # serving thread before handing out the URL.
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    # Proxy variables would route 127.0.0.1 through a proxy and make the tests flaky.
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
    )


def snapshot_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def import_generated(generated_dir: Path) -> ModuleType:
    """Import a generated ``_generated`` package from ``generated_dir`` under a unique name."""
    name = f"generated_under_test_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        name, generated_dir / "__init__.py", submodule_search_locations=[str(generated_dir)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_example(version: str, name: str) -> dict[str, Any]:
    with (FIXTURES / "examples" / version / f"{name}.json").open(encoding="utf-8") as fh:
        document: dict[str, Any] = json.load(fh)
    # Beanie documents carry the id as `id` (alias `_id`, an ObjectId); the plain models have
    # no `_id` field, so keep the example to the schema's own properties.
    document.pop("_id")
    return document


@pytest.fixture(scope="module")
def generated_v32(schema_source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("models-v0.0.32")
    result = run_generator(
        "--source", schema_source, "--version", "v0.0.32", "--output-dir", str(output_dir)
    )
    assert result.returncode == 0, result.stderr
    return output_dir


@pytest.fixture(scope="module")
def models_v32(generated_v32: Path) -> Iterator[ModuleType]:
    module = import_generated(generated_v32 / "_generated")
    yield module
    for name in [n for n in sys.modules if n.startswith(module.__name__)]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def models_v31() -> ModuleType:
    import packages.models._generated as committed

    return committed


def test_generate_from_http_writes_package_and_snapshot(generated_v32: Path) -> None:
    generated = generated_v32 / "_generated"
    assert sorted(snapshot_tree(generated)) == [
        ".schema-version",
        "README.md",
        "__init__.py",
        "documents.py",
        "mcp_options.py",
        "mcp_server_document.py",
        "token_document.py",
    ]
    assert (generated / ".schema-version").read_text(encoding="utf-8").strip() == "v0.0.32"
    for name in ("MCPServerDocument.json", "MCPOptions.json", "Token.json"):
        snapshot = generated_v32 / "schemas" / "v0.0.32" / name
        assert snapshot.read_bytes() == (FIXTURES / "v0.0.32" / name).read_bytes()
    header = (generated / "documents.py").read_text(encoding="utf-8").splitlines()[0]
    assert header == (
        "# GENERATED by scripts/generate_schemas.py from jarvis-api schemas v0.0.32"
        " \u2014 DO NOT EDIT"
    )


def test_generate_v32_adds_tenant_id_to_documents(models_v32: ModuleType) -> None:
    assert models_v32.__version__ == "v0.0.32"
    for document in (models_v32.MCPServer, models_v32.Token):
        aliases = {field.alias or name for name, field in document.model_fields.items()}
        assert "tenantId" in aliases
        assert document.model_fields["tenant_id"].alias == "tenantId"


@pytest.mark.parametrize("example", SERVER_EXAMPLES)
def test_validate_v31_server_example_with_v32_models(models_v32: ModuleType, example: str) -> None:
    # Beanie documents cannot be instantiated before init_beanie (it needs a server), so the
    # data is validated through the generated base model the document subclasses.
    base = models_v32.mcp_server_document.MCPServerDocument
    assert issubclass(models_v32.MCPServer, base)
    document = load_example("v0.0.31", example)

    server = base.model_validate(document)

    assert server.server_name == document["serverName"]
    assert server.tenant_id is None
    assert server.config.root.type == document["config"]["type"]


def test_validate_v31_token_example_with_v32_models(models_v32: ModuleType) -> None:
    base = models_v32.token_document.Token
    assert issubclass(models_v32.Token, base)

    token = base.model_validate(load_example("v0.0.31", TOKEN_EXAMPLE))

    assert token.type == "mcp_oauth"
    assert token.tenant_id is None


@pytest.mark.parametrize("example", SERVER_EXAMPLES)
def test_validate_v32_server_example_with_v31_models_keeps_unknown_fields(
    models_v31: ModuleType, example: str
) -> None:
    base = models_v31.mcp_server_document.MCPServerDocument
    document = load_example("v0.0.32", example)
    server = base.model_validate(document)
    server.num_stars = 99  # read-modify-write: unknown fields must survive
    dumped = server.model_dump(mode="json", by_alias=True, exclude_unset=True)
    encoded = Encoder(to_db=True).encode(server)  # what Beanie's save() writes

    assert server.model_extra == {"tenantId": "acme"}
    transport = type(server.config.root)
    known = {field.alias or name for name, field in transport.model_fields.items()}
    new_config_keys = set(document["config"]) - known
    assert new_config_keys
    assert set(server.config.root.model_extra) == new_config_keys
    for written in (dumped, encoded):
        assert written["tenantId"] == "acme"
        assert written["numStars"] == 99
        for key in new_config_keys:
            assert written["config"][key] == document["config"][key]


def test_validate_v32_token_example_with_v31_models_keeps_unknown_fields(
    models_v31: ModuleType,
) -> None:
    base = models_v31.token_document.Token

    token = base.model_validate(load_example("v0.0.32", TOKEN_EXAMPLE))

    assert token.model_extra == {"tenantId": "acme"}
    assert Encoder(to_db=True).encode(token)["tenantId"] == "acme"


def test_generate_missing_version_fails_naming_url(schema_source: str, tmp_path: Path) -> None:
    output_dir = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS / "_generated", output_dir / "_generated")
    before = snapshot_tree(output_dir)

    result = run_generator(
        "--source", schema_source, "--version", "v9.9.9", "--output-dir", str(output_dir)
    )

    assert result.returncode == 2
    assert f"{schema_source}/v9.9.9/MCPServerDocument.json" in result.stderr
    assert "HTTP 404" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot_tree(output_dir) == before
    assert sorted(p.name for p in output_dir.iterdir()) == ["_generated"]


def test_generate_unreachable_source_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    output_dir = tmp_path / "models"

    result = run_generator(
        "--source",
        f"http://127.0.0.1:{closed_port}",
        "--version",
        "v0.0.32",
        "--output-dir",
        str(output_dir),
    )

    assert result.returncode == 2
    assert f"http://127.0.0.1:{closed_port}/v0.0.32/MCPServerDocument.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output_dir.exists()


def test_generate_twice_gives_identical_output(
    schema_source: str, generated_v32: Path, tmp_path: Path
) -> None:
    args = ("--source", schema_source, "--version", "v0.0.32", "--output-dir", str(tmp_path))
    first = run_generator(*args)
    first_tree = snapshot_tree(tmp_path)
    second = run_generator(*args)

    assert first.returncode == second.returncode == 0
    assert snapshot_tree(tmp_path) == first_tree
    assert first_tree == snapshot_tree(generated_v32)


def test_generate_from_local_dir_matches_http(generated_v32: Path, tmp_path: Path) -> None:
    result = run_generator(
        "--source", str(FIXTURES), "--version", "v0.0.32", "--output-dir", str(tmp_path)
    )

    assert result.returncode == 0, result.stderr
    assert snapshot_tree(tmp_path) == snapshot_tree(generated_v32)


def test_check_committed_output_passes() -> None:
    result = run_generator("--check")

    assert result.returncode == 0, result.stderr


def test_check_fresh_output_passes(generated_v32: Path) -> None:
    result = run_generator("--check", "--output-dir", str(generated_v32))

    assert result.returncode == 0, result.stderr
    assert "v0.0.32" in result.stdout


def test_check_tampered_copy_fails_with_summary(tmp_path: Path) -> None:
    shutil.copytree(COMMITTED_MODELS / "_generated", tmp_path / "_generated")
    shutil.copytree(COMMITTED_MODELS / "schemas", tmp_path / "schemas")
    documents = tmp_path / "_generated" / "documents.py"
    documents.write_text(
        documents.read_text(encoding="utf-8").replace('name = "tokens"', 'name = "tokenz"'),
        encoding="utf-8",
    )
    (tmp_path / "_generated" / "README.md").unlink()
    (tmp_path / "_generated" / "hand_written.py").write_text("x = 1\n", encoding="utf-8")

    result = run_generator("--check", "--output-dir", str(tmp_path))

    assert result.returncode == 1
    assert "differs: documents.py" in result.stderr
    assert "missing: README.md" in result.stderr
    assert "extra: hand_written.py" in result.stderr
    assert '-        name = "tokenz"' in result.stderr
    assert '+        name = "tokens"' in result.stderr
    assert "python scripts/generate_schemas.py --version v0.0.31" in result.stderr
