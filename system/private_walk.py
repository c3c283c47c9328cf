"""What under a folder others may not read or enter, looked for by find(1) in a process of its own.

A sandbox is its worker's user in a namespace of its own, so what only that user may read (in /etc an SSH host key, a
VPN's or a TLS certificate's private key, a cluster's admin config; in a toolchain a pip.conf with an index's token;
for a root worker anything root's alone) is read through its owner's permission: system/covers.py covers it.

find looks through ~/.pyenv (130,000 entries) in 0.6 s where a walk in Python took 1.0 s, and beside the worker's
own start, on the other core and without the interpreter's lock, where the Python walk slowed that start down.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from system.files import required_program

# One record, NUL-ended, per entry looked at: empty for one others may read, `P` and its path for one they may not
# (a folder others may not enter is not looked into). A link is never followed, nor looked at: what it names is
# looked at where it is, if shown. find prints a name as it is when its output is no terminal.
_PRIVATE = "P%p\\0"
_FIND_EXPRESSION = (
    "(", "-type", "d", "!", "-perm", "-005", "-printf", _PRIVATE, "-prune", ")",
    "-o", "(", "-type", "f", "!", "-perm", "-004", "-printf", _PRIVATE, ")",
    "-o", "!", "-type", "l", "-printf", "\\0",
)  # fmt: skip
_CHUNK = 1 << 16


class TooLarge(Exception):
    """A folder holds more entries than a walk of it may look at."""


class PrivateWalk:
    """find looking under root for what others may not read or enter, started at once; answer() waits for it. Past
    `most` entries it is stopped, and answer() raises TooLarge. A thread reads its records as they come, so find
    never waits on a full pipe."""

    def __init__(self, root: Path, most: int | None = None) -> None:
        self.root, self.most = root, most
        self._found: list[Path] | TooLarge | OSError = OSError(f"{root} was not looked through")
        self._find = subprocess.Popen(
            [required_program("find", os.environ.get("PATH")), os.fspath(root), "-mindepth", "1", *_FIND_EXPRESSION],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a folder it may not read: nothing there to cover for its user
        )
        self._reading = threading.Thread(target=self._read, name="fleet-private-walk", daemon=True)
        self._reading.start()

    def done(self) -> bool:
        return not self._reading.is_alive()

    def answer(self) -> list[Path]:
        self._reading.join()
        if isinstance(self._found, Exception):
            raise self._found
        return self._found

    def _read(self) -> None:
        assert self._find.stdout is not None
        chunks, looked_at = [], 0
        with self._find:
            while chunk := self._find.stdout.read(_CHUNK):
                looked_at += chunk.count(b"\0")
                if self.most is not None and looked_at > self.most:
                    self._find.kill()
                    self._found = TooLarge(f"{self.root} holds more than {self.most} entries")
                    return
                chunks.append(chunk)
        records = b"".join(chunks).split(b"\0")
        self._found = [Path(os.fsdecode(record[1:])) for record in records if record]


def private_in(root: Path, most: int | None = None) -> list[Path]:
    """What under root others may not read or enter, the highest such folder for what it holds; TooLarge once more
    than `most` entries were looked at."""
    return PrivateWalk(root, most).answer()
