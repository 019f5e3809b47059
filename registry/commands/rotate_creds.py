"""``mcp-registry rotate-creds --new-key HEX [--new-iv HEX] [--dry-run] [--batch-size N]``.

Re-encrypts every stored secret (``mcpservers`` API keys and OAuth client secrets, ``tokens``
values) from the current ``CREDS_KEY``/``CREDS_IV`` to the new key, in batches, resumably (see
``registry.services.key_rotation`` and docs/credentials.md for the operator procedure). Pass
``--new-key -`` to read the key (and optionally the IV on a second line) from standard input
instead of the command line.

Prints the report as JSON. Exit status: 0 when every value is under the new key, 1 when some
values could not be decrypted (listed by document id and field), the run did not complete or
the embedded database could not start, 2 on a usage or configuration error (a data directory
another process holds included).

Ctrl-C (SIGINT) or SIGTERM stops the run after the batch in progress: the report shows what
was done with ``"complete": false``, and running the command again finishes the job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, TextIO

from packages.database.encryption import EncryptionService, InvalidKeyError
from registry.bootstrap import ConfigurationError, load_settings, resolve_settings
from registry.cli import _EXTRA_COMMANDS
from registry.config import Settings
from registry.db_session import open_database
from registry.services.key_rotation import DEFAULT_BATCH_SIZE, rotate_credentials

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_rotation(
    *,
    settings: Settings,
    new_key_hex: str,
    new_iv_hex: str | None,
    dry_run: bool,
    batch_size: int,
    out: TextIO,
) -> int:
    """Open the database for ``settings``, rotate to the new key, write the report to ``out``.

    The old key is the configured ``CREDS_KEY``/``CREDS_IV``; the new IV defaults to the
    current one. Returns the exit status (see the module doc). Raises ConfigurationError for
    malformed key material (checked before connecting) and ValueError when the new key is the
    current one.
    """
    if settings.creds_iv is None:
        raise ConfigurationError("CREDS_KEY and CREDS_IV (the current key) must be set")
    try:
        new = EncryptionService(
            key_hex=new_key_hex.strip().lower(),
            iv_hex=(new_iv_hex or settings.creds_iv.get_secret_value()).strip().lower(),
        )
    except InvalidKeyError as exc:
        option = "--new-key" if exc.variable == "CREDS_KEY" else "--new-iv"
        raise ConfigurationError(f"{option} {exc.reason}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with open_database(settings) as session:
            report = await rotate_credentials(
                database=session.database,
                old=session.encryption,
                new=new,
                dry_run=dry_run,
                batch_size=batch_size,
                stop=stop,
            )
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    out.write(json.dumps(report.as_dict(), indent=2) + "\n")
    if stop.is_set():
        sys.stderr.write(
            "mcp-registry rotate-creds: interrupted after a whole batch; "
            "run the same command again to finish\n"
        )
    return 0 if report.complete and not report.undecryptable else 1


def _key_material(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.new_key != "-":
        return args.new_key, args.new_iv
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise ConfigurationError("no key on standard input")
    return lines[0], args.new_iv or (lines[1] if len(lines) > 1 else None)


def _handle(args: argparse.Namespace) -> int:
    from registry.logging import configure_logging

    try:
        settings = resolve_settings(load_settings()).settings
        configure_logging(level=settings.log_level, fmt=settings.log_format)
        key_hex, iv_hex = _key_material(args)
        return asyncio.run(
            run_rotation(
                settings=settings,
                new_key_hex=key_hex,
                new_iv_hex=iv_hex,
                dry_run=args.dry_run,
                batch_size=args.batch_size,
                out=sys.stdout,
            )
        )
    except (ConfigurationError, ValueError) as exc:
        # Messages name the option or variable, never a key.
        sys.stderr.write(f"mcp-registry rotate-creds: {exc}\n")
        return 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def register(commands: Any) -> None:
    """Add ``rotate-creds`` to the ``mcp-registry`` subcommands."""
    parser = commands.add_parser(
        "rotate-creds",
        help="re-encrypt every stored secret under a new CREDS_KEY (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--new-key", required=True, help="the new CREDS_KEY (64 hex characters), or - for stdin"
    )
    parser.add_argument(
        "--new-iv", default=None, help="the new CREDS_IV (32 hex characters; default: current)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would happen, write nothing"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help=f"documents read per batch (default {DEFAULT_BATCH_SIZE})",
    )
    parser.set_defaults(handler=_handle)


_EXTRA_COMMANDS.append(register)
