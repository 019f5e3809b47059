"""The ``mcp-registry`` command: serve the API and run operator tasks."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from packages.database.embedded import EmbeddedDatabaseError
from registry.bootstrap import (
    ConfigurationError,
    check_startup,
    load_settings,
)

# Exit statuses (besides 0): the service stopped because its embedded database died or could
# not start; the configuration cannot run the service (the message says what to set or run).
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``15m``, ``8h`` or ``30d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30m, 8h, 7d")
    value, unit = match.groups()
    try:
        duration = timedelta(**{_UNITS[unit]: int(value)})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too long") from None
    if duration <= timedelta(0):
        raise argparse.ArgumentTypeError(f"duration {text!r} must be longer than zero")
    return duration


def _refuse(exc: Exception) -> int:
    """Report a startup error in one line (its message says what to fix), no traceback."""
    sys.stderr.write(f"mcp-registry: {exc}\n")
    return EXIT_FAILED if isinstance(exc, EmbeddedDatabaseError) else EXIT_CONFIGURATION


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.app import create_app
    from registry.logging import configure_logging
    from registry.server import RegistryServer

    # Checked before the server starts: a bad value stops the process with one line naming
    # the variable, not a traceback from deep inside the server's startup.
    settings = load_settings()
    check_startup(settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
    )
    server = RegistryServer(config, app=app)

    def request_shutdown() -> None:
        server.should_exit = True

    app.state.request_shutdown = request_shutdown
    try:
        server.run()
    except SystemExit:
        # uvicorn exits (status 3) when the application's startup fails; the lifespan has
        # recorded and logged why when it is one of our startup errors.
        if app.state.startup_error is None:
            raise
    if app.state.startup_error is not None:
        return _refuse(app.state.startup_error)
    fatal = app.state.fatal_error
    if fatal:
        sys.stderr.write(f"mcp-registry: stopped because the {fatal}\n")
        return EXIT_FAILED
    if not server.started:
        return EXIT_FAILED
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from registry.auth import TokenIssuer, UserContext
    from registry.bootstrap import resolve_settings

    settings = resolve_settings(load_settings()).settings
    user = UserContext(
        user_id=args.user_id,
        role=args.role,
        username=args.username,
        email=args.email,
        groups=tuple(args.group or ()),
        scopes=tuple(args.scope or ()),
    )
    issuer = TokenIssuer.from_settings(settings)
    token = issuer.issue(
        user=user, token_type="access", expires_in=args.expires_in, scopes=user.scopes
    )
    sys.stdout.write(token + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-registry", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the registry and gateway HTTP service")
    serve.add_argument("--host", default=None, help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT or 8000)")
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a signed access token")
    create.add_argument("--user-id", required=True)
    create.add_argument("--role", choices=["admin", "user"], default="user")
    create.add_argument("--username", default=None)
    create.add_argument("--email", default=None)
    create.add_argument("--group", action="append", help="group membership (repeatable)")
    create.add_argument("--scope", action="append", help="granted scope (repeatable)")
    create.add_argument("--expires-in", type=parse_duration, default=timedelta(hours=8))
    create.set_defaults(handler=_token_create)

    for register in _EXTRA_COMMANDS:
        register(commands)
    return parser


# Other modules add subcommands here (import-servers, rotate-creds) without growing this file.
_EXTRA_COMMANDS: list[Any] = []


def main(argv: Sequence[str] | None = None) -> int:
    from registry import commands  # noqa: F401  # registers the operator subcommands

    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
    except (ConfigurationError, EmbeddedDatabaseError) as exc:
        return _refuse(exc)
    return result


if __name__ == "__main__":
    # Run through the importable module: subcommands register into registry.cli, not into
    # this __main__ copy of it.
    from registry.cli import main as registered_main

    sys.exit(registered_main())
