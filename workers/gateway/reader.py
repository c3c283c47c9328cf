"""Large request bodies are read in a child process, never on the gateway's loop, which serves every agent of the
worker process.

json.loads runs without releasing the interpreter lock (it calls no Python code), so a thread would not free the
loop: 32 MiB of `[{},{},...]` holds it for about half a second, and a hostile agent can send one after another. A
body up to LARGE_BYTES is read on the loop (a hop to the child costs more than reading 2 KB); a larger one goes to
the worker process's one child, started at the first such body, which reads one body at a time. At most
MAX_WAITING_BYTES of bodies wait for it or are in it at once, for the whole process; past that a large body is
refused (Busy: the gateway answers 503, retry) rather than held in memory.

The child speaks frames on its stdin and stdout: a frame is an 8-byte length and that many bytes. Asked: a JSON
header (family, path, wire, secrets) and the body. Answered: a JSON header (the Asked fields, or an error) and the
body to send instead (empty for none).
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import BinaryIO

from workers.gateway.reading import Asked, read_request
from workers.gateway.usage import Wire

LARGE_BYTES = 256 * 2**10
MAX_WAITING_BYTES = 64 * 2**20  # two of the largest bodies a gate takes
CHILD = (sys.executable, "-m", "workers.gateway.reader")
LENGTH = struct.Struct(">Q")
Read = Callable[[str, str, Wire, bytes, tuple[str, ...]], Asked]


class Busy(Exception):
    """Too many bytes of large bodies are waiting to be read: the request is refused, to be retried."""


class ReadFailed(Exception):
    """The child process that reads large bodies ended or answered nothing readable."""


class Reader:
    """Reads the worker process's metered request bodies: small ones at once, large ones in the child process."""

    def __init__(
        self, command: tuple[str, ...] = CHILD, read: Read = read_request, waiting_limit: int = MAX_WAITING_BYTES
    ) -> None:
        """`command` runs the child (serve() of this module); `read` reads the small bodies, as the child does."""
        self.command, self.small, self.waiting_limit = command, read, waiting_limit
        self.waiting = 0  # bytes of bodies sent to or waiting for the child (touched on the gateway's loop only)
        self._child: asyncio.subprocess.Process | None = None
        self._turn: asyncio.Lock | None = None
        self._running: set[asyncio.Task[Asked]] = set()

    async def read(self, family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]) -> Asked:
        """What the request asks for. A small body is read before this returns control to the loop."""
        if len(body) <= LARGE_BYTES:
            return self.small(family, rest, wire, body, secrets)
        if self.waiting + len(body) > self.waiting_limit:
            raise Busy(f"{self.waiting_limit // 2**20} MiB of large request bodies are already being read")
        self.waiting += len(body)
        task = asyncio.ensure_future(self._in_child(len(body), family, rest, wire, body, secrets))
        self._running.add(task)
        task.add_done_callback(self._ended)
        # Shielded: a request cut while its body is in the child must not leave the child's answer unread.
        return await asyncio.shield(task)

    def _ended(self, task: asyncio.Task[Asked]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the request that waited for it may have been cut

    async def close(self) -> None:
        """Stop the child, if one was started."""
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()

    async def _in_child(
        self, size: int, family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]
    ) -> Asked:
        self._turn = self._turn or asyncio.Lock()
        try:
            async with self._turn:  # one body at a time, in the order they came
                return await self._exchange(family, rest, wire, body, secrets)
        finally:
            self.waiting -= size

    async def _exchange(self, family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]) -> Asked:
        child = await self._started()
        assert child.stdin is not None and child.stdout is not None
        header = json.dumps({"family": family, "rest": rest, "wire": wire.value, "secrets": secrets}).encode()
        try:
            child.stdin.writelines([LENGTH.pack(len(header)), header, LENGTH.pack(len(body)), body])
            await child.stdin.drain()
            answer = json.loads(await _frame(child.stdout))
            sent = await _frame(child.stdout)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            await self.close()  # the next large body starts a new child
            raise ReadFailed(f"the process reading large bodies ended ({type(error).__name__})") from error
        if "error" in answer:
            raise ReadFailed(f"the process reading large bodies failed: {answer['error']}")
        return Asked(**(answer | {"sent": sent or None}))

    async def _started(self) -> asyncio.subprocess.Process:
        if self._child is None or self._child.returncode is not None:
            self._child = await asyncio.create_subprocess_exec(  # its own session: a Ctrl-C of the worker's
                *self.command,  # terminal stops the worker gently, which must not kill the reader under it
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        return self._child


async def _frame(stream: asyncio.StreamReader) -> bytes:
    (size,) = LENGTH.unpack(await stream.readexactly(LENGTH.size))
    return await stream.readexactly(size)


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def _answer(read: Read, header: bytes, body: bytes) -> tuple[bytes, bytes]:
    try:
        asked = json.loads(header)
        answer = read(asked["family"], asked["rest"], Wire(asked["wire"]), body, tuple(asked["secrets"]))
    except Exception as error:  # the one request fails (503), the child lives on
        return json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}).encode(), b""
    fields = asdict(answer)
    sent = fields.pop("sent") or b""
    return json.dumps(fields).encode(), sent


def serve(read: Read = read_request) -> None:
    """The child's loop: read each body asked for until its parent closes the pipe."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (header := _read_frame(stdin)) is not None and (body := _read_frame(stdin)) is not None:
        answer, sent = _answer(read, header, body)
        stdout.writelines([LENGTH.pack(len(answer)), answer, LENGTH.pack(len(sent)), sent])
        stdout.flush()


if __name__ == "__main__":
    serve()
