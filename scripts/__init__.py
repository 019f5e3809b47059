"""Operator and maintenance scripts (run as files: python scripts/<name>.py)."""
