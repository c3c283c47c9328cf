"""The gateway's reader child (workers/gateway/reader.py), but a body or answer that names a file in `hold_until` is
read only once that file exists (and says so in `<file>.reading`): a test holds a large body or answer while it is being
read and sees what else the gateway serves."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from workers.gateway.reader import serve
from workers.gateway.reading import Asked, read_answer, read_request
from workers.gateway.usage import Tally, Wire

HELD_COMMAND = (sys.executable, __file__)
HOLD = re.compile(rb'"hold_until": "([^"]+)"')
HOLD_SECONDS = 60.0


def held_read(family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]) -> Asked:
    """read_request, once the file the body names (if any) exists; `<file>.reading` says it is waiting."""
    _held(body)
    return read_request(family, rest, wire, body, secrets)


def held_answer(wire: Wire, content: bytes, secrets: tuple[str, ...]) -> tuple[Tally, str]:
    """read_answer, once the file the answer names (if any) exists."""
    _held(content)
    return read_answer(wire, content, secrets)


def _held(data: bytes) -> None:
    if held := HOLD.search(data[:4096]):
        hold = Path(held[1].decode())
        hold.with_suffix(".reading").touch()
        deadline = time.monotonic() + HOLD_SECONDS
        while not hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


if __name__ == "__main__":
    serve(held_read, held_answer)
