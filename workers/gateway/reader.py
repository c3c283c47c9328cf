"""Large request bodies, and large whole JSON answers, are read in a child process, never on the gateway's loop, which
serves every agent of the worker process (30 MiB of log-probabilities in an answer held every other gate for 14.6 s,
bench/gateway_answer_stall.py). An answer waits in the same line as the bodies; one the child cannot read is charged
as all output (handler.py).

json.loads runs without releasing the interpreter lock (it calls no Python code), so a thread would not free the
loop: 32 MiB of `[{},{},...]` holds it for about half a second, and a hostile agent can send one after another. A
body up to LARGE_BYTES is read on the loop (a hop to the child costs more than reading 2 KB); a larger one goes to
the worker process's one child, started at the first such body, which reads one body at a time, in the order they
came. Each gate has at most one of the largest bodies in line (the handler refuses more), so an agent's large body
waits behind at most one body of each other agent, rather than being refused while hostile agents keep the line
full; one that waits WAIT_SECONDS for its turn is refused (Busy: the gateway answers 503, retry).

json.loads builds Python objects far larger than their text: `[{},{},...]` takes 27 times its size, so 32 MiB of it
would take 900 MB. The child may use MEMORY_BYTES of address space; a body whose reading needs more is refused
(TooHeavy: 413, not to be retried) and the child started anew for the next.

The child speaks frames on its stdin and stdout: a frame is an 8-byte length and that many bytes. Asked: a JSON
header (family, path, wire, secrets) and the body. Answered: a JSON header (the Asked fields, or an error) and the
body to send instead (empty for none).
"""

from __future__ import annotations

import asyncio
import json
import resource
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, BinaryIO

from workers.gateway.reading import Asked, read_answer, read_request
from workers.gateway.usage import Tally, Usage, Wire

LARGE_BYTES = 256 * 2**10
# Reading a body takes about a second at most (32 MiB): thirty seconds is a line of agents each with its largest.
WAIT_SECONDS = 30.0
# 32 MiB of ordinary JSON (long texts; or a conversation of 200,000 short messages) takes 150 to 310 MB to read;
# `[{},{},...]` passes the limit from about 18 MiB.
MEMORY_BYTES = 512 * 2**20
CHILD = (sys.executable, "-m", "workers.gateway.reader")
LENGTH = struct.Struct(">Q")
Read = Callable[[str, str, Wire, bytes, tuple[str, ...]], Asked]
ReadAnswer = Callable[[Wire, bytes, tuple[str, ...]], tuple[Tally, str]]


class Busy(Exception):
    """A large body cannot be read now (its gate already has its share in line, or it waited too long for its turn):
    the request is refused, to be retried."""


class TooHeavy(Exception):
    """Reading the body would take more memory than the child may use: the request is refused, not to be retried."""


class ReadFailed(Exception):
    """The child process that reads large bodies ended or answered nothing readable."""


class Reader:
    """Reads the worker process's metered request bodies: small ones at once, large ones in the child process."""

    def __init__(
        self,
        command: tuple[str, ...] = CHILD,
        read: Read = read_request,
        wait_seconds: float = WAIT_SECONDS,
        read_whole: ReadAnswer = read_answer,
    ) -> None:
        """`command` runs the child (serve() of this module); `read` and `read_whole` read the small bodies and
        answers, as the child does."""
        self.command, self.small, self.wait_seconds = command, read, wait_seconds
        self.small_answer = read_whole
        self.waiting = 0  # bytes of bodies in line for the child or in it (touched on the gateway's loop only)
        self._child: asyncio.subprocess.Process | None = None
        self._turn: asyncio.Lock | None = None
        self._running: set[asyncio.Task[tuple[dict[str, Any], bytes]]] = set()

    async def read(self, family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]) -> Asked:
        """What the request asks for. A small body is read before this returns control to the loop."""
        if len(body) <= LARGE_BYTES:
            return self.small(family, rest, wire, body, secrets)
        header = {"family": family, "rest": rest, "wire": wire.value, "secrets": secrets}
        answer, sent = await self._in_turn(header, body)
        return Asked(**(answer | {"sent": sent or None}))

    async def answer(self, wire: Wire, content: bytes, secrets: tuple[str, ...]) -> tuple[Tally, str]:
        """What a whole JSON answer says, and the answer as stored; a large one is read in the child, in line with the
        request bodies, as they are."""
        if len(content) <= LARGE_BYTES:
            return self.small_answer(wire, content, secrets)
        said, record = await self._in_turn({"answer": True, "wire": wire.value, "secrets": secrets}, content)
        usage = Usage(**said["usage"]) if said["usage"] is not None else None
        return Tally(wire, usage, said["model"], said["reported"], said["said"]), record.decode()

    async def _in_turn(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """The child's answer to header and body, once every body that came before has been read."""
        self.waiting += len(body)
        try:
            turn = await self._turn_taken()
        except BaseException:  # a request cut while in line leaves it: nothing was sent to the child
            self.waiting -= len(body)
            raise
        task = asyncio.ensure_future(self._exchange(header, body))
        self._running.add(task)
        task.add_done_callback(lambda ended: self._ended(ended, turn, len(body)))
        # Shielded: a request cut while its body is in the child must not leave the child's answer unread.
        return await asyncio.shield(task)

    async def _turn_taken(self) -> asyncio.Lock:
        """The child's turn, once every body that came before has been read (asyncio's lock wakes in order)."""
        self._turn = self._turn or asyncio.Lock()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._turn.acquire()
        except TimeoutError:
            raise Busy(f"a large request body waited {self.wait_seconds:g} s for its turn to be read") from None
        return self._turn

    def _ended(self, task: asyncio.Task[tuple[dict[str, Any], bytes]], turn: asyncio.Lock, size: int) -> None:
        self._running.discard(task)
        self.waiting -= size
        turn.release()
        if not task.cancelled():
            task.exception()  # retrieved: the request that waited for it may have been cut

    async def close(self) -> None:
        """Stop the child, if one was started."""
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()

    async def _exchange(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        child = await self._started()
        assert child.stdin is not None and child.stdout is not None
        asked = json.dumps(header).encode()
        try:
            child.stdin.writelines([LENGTH.pack(len(asked)), asked, LENGTH.pack(len(body)), body])
            await child.stdin.drain()
            answer = json.loads(await _frame(child.stdout))
            sent = await _frame(child.stdout)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            await self.close()  # the next large body starts a new child
            raise ReadFailed(f"the process reading large bodies ended ({type(error).__name__})") from error
        if "too_heavy" in answer:
            await self.close()  # a child that ran out of memory is not trusted with the next body
            raise TooHeavy(f"its JSON needs more than {MEMORY_BYTES // 2**20} MiB of memory to read")
        if "error" in answer:
            raise ReadFailed(f"the process reading large bodies failed: {answer['error']}")
        return answer, sent

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


def _answer(read: Read, read_whole: ReadAnswer, header: bytes, body: bytes) -> tuple[bytes, bytes]:
    try:
        asked = json.loads(header)
        if asked.get("answer"):
            tally, record = read_whole(Wire(asked["wire"]), body, tuple(asked["secrets"]))
            usage = None if tally.usage is None else asdict(tally.usage)
            said = {"usage": usage, "model": tally.model, "reported": tally.error, "said": tally.said}
            return json.dumps(said).encode(), record.encode()
        answer = read(asked["family"], asked["rest"], Wire(asked["wire"]), body, tuple(asked["secrets"]))
    except MemoryError:
        return json.dumps({"too_heavy": True}).encode(), b""
    except Exception as error:  # the one request fails (503), the child lives on
        return json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}).encode(), b""
    fields = asdict(answer)
    sent = fields.pop("sent") or b""
    return json.dumps(fields).encode(), sent


def serve(read: Read = read_request, read_whole: ReadAnswer = read_answer) -> None:
    """The child's loop: read each body asked for until its parent closes the pipe."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(
        resource.RLIMIT_AS, (MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard), hard)
    )
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (header := _read_frame(stdin)) is not None and (body := _read_frame(stdin)) is not None:
        answer, sent = _answer(read, read_whole, header, body)
        stdout.writelines([LENGTH.pack(len(answer)), answer, LENGTH.pack(len(sent)), sent])
        stdout.flush()


if __name__ == "__main__":
    serve()
