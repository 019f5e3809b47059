"""Operator subcommands of ``mcp-registry`` (each module registers itself in registry.cli)."""
