"""structlog configuration: JSON lines in production, a console renderer on a TTY.

A redaction processor drops secret-looking keys as a backstop; the first line of defence is
never passing secrets to the logger at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "password",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "creds_key",
        "creds_iv",
        "jwt_secret",
        "mongo_uri",
        "arguments",
        "headers",
    }
)
REDACTED = "[REDACTED]"


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace values of secret-looking keys (at the top level and one level down)."""
    for name, value in list(event_dict.items()):
        if name.lower() in _SECRET_KEYS:
            event_dict[name] = REDACTED
        elif isinstance(value, dict):
            event_dict[name] = {
                k: (REDACTED if isinstance(k, str) and k.lower() in _SECRET_KEYS else v)
                for k, v in value.items()
            }
    return event_dict


def uses_json(fmt: Literal["auto", "json", "console"]) -> bool:
    """True when log lines are JSON: ``json``, or ``auto`` with stderr not a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def configure_logging(
    *, level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Configure structlog and the standard library logging once for the process.

    Standard-library records (uvicorn's "Started server process", library warnings and their
    tracebacks) go through the same processors and renderer as structlog's own events, so in
    JSON mode every line on stderr is one JSON object, redacted the same way.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if uses_json(fmt)
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=numeric_level, handlers=[handler], force=True)
    # Library chatter (pymongo heartbeats, httpx requests) is not useful at INFO.
    for noisy in ("pymongo", "httpx", "httpcore", "mcp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.WARNING))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` is bound as ``logger``."""
    log = structlog.get_logger()
    return log.bind(logger=name) if name else log
