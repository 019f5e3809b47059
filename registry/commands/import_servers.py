"""``mcp-registry import-servers DIR --author ADMIN_ID [--dry-run]``.

One-time import of the file-based registry's server configs (see
``registry.services.importer`` and docs/admin.md). Prints one line per file, then
``imported=N skipped=N failed=N``; exits 0 when nothing failed, 1 otherwise, 2 on a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from registry.bootstrap import ConfigurationError, load_settings, resolve_settings
from registry.cli import _EXTRA_COMMANDS
from registry.config import Settings
from registry.db_session import open_database
from registry.errors import InvalidRequestError
from registry.services.importer import ImportReport, import_directory


def format_report(report: ImportReport) -> str:
    """The command's output: one line per file, then the counts."""
    lines = []
    for result in report.results:
        target = f" -> {result.server_name}" if result.server_name else ""
        reason = f": {result.reason}" if result.reason else ""
        lines.append(f"{result.outcome:<9}{result.file}{target}{reason}")
    summary = (
        f"imported={report.count('imported')} skipped={report.count('skipped')} "
        f"failed={report.count('failed')}"
    )
    if report.dry_run:
        summary += " (dry run: nothing was written)"
    lines.append(summary)
    return "\n".join(lines) + "\n"


async def run_import(
    *, settings: Settings, directory: Path, author_id: str, dry_run: bool, out: TextIO
) -> int:
    """Open the database for ``settings``, import ``directory``, write the report to ``out``.

    Returns the exit status: 0 when no file failed, 1 otherwise.
    """
    async with open_database(settings):
        report = await import_directory(
            directory=directory,
            author_id=author_id,
            dry_run=dry_run,
            default_exposure=settings.default_tool_exposure,
        )
    out.write(format_report(report))
    return 1 if report.has_failures else 0


def _handle(args: argparse.Namespace) -> int:
    from registry.logging import configure_logging

    try:
        settings = resolve_settings(load_settings()).settings
        configure_logging(level=settings.log_level, fmt=settings.log_format)
        return asyncio.run(
            run_import(
                settings=settings,
                directory=args.directory,
                author_id=args.author,
                dry_run=args.dry_run,
                out=sys.stdout,
            )
        )
    except (InvalidRequestError, ConfigurationError) as exc:
        sys.stderr.write(f"mcp-registry import-servers: {exc}\n")
        return 2


def _object_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{24}", text):
        raise argparse.ArgumentTypeError("must be a 24-hex-digit user id (ObjectId)")
    return text.lower()


def register(commands: Any) -> None:
    """Add ``import-servers`` to the ``mcp-registry`` subcommands."""
    parser = commands.add_parser(
        "import-servers",
        help="import the file-based registry's server configs into MongoDB (one-time)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", type=Path, help="directory of *.json server configs")
    parser.add_argument(
        "--author",
        required=True,
        type=_object_id,
        help="user id (ObjectId) of the admin who owns the servers",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would happen, write nothing"
    )
    parser.set_defaults(handler=_handle)


_EXTRA_COMMANDS.append(register)
