"""Answer framing: event-loop CPU to relay one SSE answer through ``AnswerFramer``.

    .venv/bin/python benchmarks/answer_framing.py [--size 1000000] [--rounds 20]

What it measures, in process (no I/O): the time ``AnswerFramer.feed`` takes over all chunks of
one upstream answer, per answer (the gateway's ``relay`` does exactly this on the event loop
for every ``tools/call`` answered with server-sent events):

1. a typical answer: one ~150-byte ``message`` event arriving in one chunk (the common case);
2. one ``--size``-byte event (under the 1 MiB hold limit, so held whole until it ends) arriving
   in 4 KiB, 16 KiB and 64 KiB chunks, as a slow or chunking upstream sends a large result.

Each figure is the mean of ``--rounds`` answers. The large-event figures include one
``json.loads`` of the event's data (what the framer must do to check it). Baseline recorded in
docs/performance.md ("Answer framing").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.gateway.framing import AnswerFramer  # noqa: E402

CHUNK_SIZES = (4096, 16384, 65536)


def event(text: str) -> bytes:
    result = {"content": [{"type": "text", "text": text}]}
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()
    return b"event: message\ndata: " + payload + b"\n\n"


def per_answer(chunks: list[bytes], rounds: int) -> float:
    """Mean seconds to feed ``chunks`` (one answer) through a fresh framer."""
    expected = sum(len(chunk) for chunk in chunks)
    started = time.perf_counter()
    for _ in range(rounds):
        framer = AnswerFramer(1)
        released = sum(len(framer.feed(chunk)) for chunk in chunks)
        assert framer.answered and released == expected
    return (time.perf_counter() - started) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="large event's text length")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    small = event("hello")
    seconds = per_answer([small], args.rounds * 1000)
    print(f"typical answer ({len(small)} bytes, 1 chunk): {seconds * 1e6:.2f} µs")
    large = event("x" * args.size)
    for size in CHUNK_SIZES:
        chunks = [large[i : i + size] for i in range(0, len(large), size)]
        seconds = per_answer(chunks, args.rounds)
        print(
            f"{len(large)}-byte event in {size // 1024} KiB chunks ({len(chunks)} chunks): "
            f"{seconds * 1e3:.2f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
