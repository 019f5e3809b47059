"""Operator subcommands of ``mcp-registry`` (each module registers itself in registry.cli)."""

from registry.commands import (
    import_servers,  # noqa: F401  # registers import-servers
    rotate_creds,  # noqa: F401  # registers rotate-creds
)
