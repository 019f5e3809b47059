"""Write the served OpenAPI document to docs/openapi.yaml (or check it is up to date).

python scripts/export_openapi.py          # rewrite docs/openapi.yaml
python scripts/export_openapi.py --check  # exit 1 when the committed file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.app import create_app  # noqa: E402
from registry.config import Settings  # noqa: E402

OPENAPI_FILE = ROOT / "docs" / "openapi.yaml"


def render_openapi() -> str:
    """The OpenAPI document of the application, as stable YAML (no server connection needed)."""
    spec: dict[str, Any] = create_app(Settings()).openapi()
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    rendered = render_openapi()
    if args.check:
        current = OPENAPI_FILE.read_text(encoding="utf-8") if OPENAPI_FILE.exists() else ""
        if current != rendered:
            print(f"{OPENAPI_FILE} is out of date: run python scripts/export_openapi.py")
            return 1
        print(f"{OPENAPI_FILE} matches the served API")
        return 0
    OPENAPI_FILE.write_text(rendered, encoding="utf-8")
    print(f"wrote {OPENAPI_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
