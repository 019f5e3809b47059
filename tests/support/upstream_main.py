"""Run one echo upstream in its own process (for benchmarks: no GIL shared with the gateway).

    python -m tests.support.upstream_main --port 9100 --transport streamable-http

Serves until SIGINT/SIGTERM. The default tools are those of ``tests.support.upstreams``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from tests.support.asgi_server import HOST
from tests.support.upstreams import RunningUpstream, UpstreamSpec


def parse_spec(argv: Sequence[str] | None = None) -> tuple[UpstreamSpec, int]:
    parser = argparse.ArgumentParser(prog="python -m tests.support.upstream_main")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], default="streamable-http"
    )
    parser.add_argument("--auth", choices=["none", "bearer", "basic", "custom"], default="none")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--custom-header", default="X-API-Key")
    parser.add_argument("--delay-seconds", type=float, default=0.0)
    parser.add_argument("--name", default="echo")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args(argv)
    spec = UpstreamSpec(
        transport=args.transport,
        auth=args.auth,
        api_key=args.api_key,
        custom_header=args.custom_header,
        delay_seconds=args.delay_seconds,
        name=args.name,
        stateless=args.stateless,
        json_response=args.json_response,
    )
    return spec, args.port


def main(argv: Sequence[str] | None = None) -> None:
    spec, port = parse_spec(argv)
    upstream = RunningUpstream(spec)
    # uvicorn in the main thread: its own signal handling, and uvloop/httptools when present.
    uvicorn.run(upstream.build_app(), host=HOST, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
