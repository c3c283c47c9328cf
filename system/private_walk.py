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
import time
from pathlib import Path

from system.files import required_program

# One record, NUL-ended, per entry looked at: empty for one others may read, `P` and its path for one they may not.
# A folder others may not list or enter is named, never looked into: its records would count against MOST_COVERS
# and MOST_LOOKED_AT one by one, where its one cover hides them all. A socket or fifo is private without both read
# and write for others (connecting to a socket takes write; a fifo is read from or written to: an ssh-agent's or a
# gpg-agent's socket left in a folder on the PATH). A link is never followed, nor looked at: what it names is
# looked at where it is, if shown. find prints a name as it is when its output is no terminal.
_PRIVATE = "P%p\\0"
_EXPRESSION = (
    "(", "-type", "d", "!", "-perm", "-005", "-printf", _PRIVATE, "-prune", ")",
    "-o", "(", "-type", "f", "!", "-perm", "-004", "-printf", _PRIVATE, ")",
    "-o", "(", "(", "-type", "s", "-o", "-type", "p", ")", "!", "-perm", "-006", "-printf", _PRIVATE, ")",
    "-o", "!", "-type", "l", "-printf", "\\0",
)  # fmt: skip
_CHUNK = 1 << 16
# How long a sandbox's settings wait for a walk: ~/.pyenv takes 0.6 s, MOST_LOOKED_AT entries about 2.5 s; past it
# (a hung NFS or FUSE folder) the walk has failed, rather than every sandbox start waiting on it.
WALK_SECONDS = 60.0


class TooLarge(Exception):
    """A folder holds more entries than a walk of it may look at."""


class WalkFailed(OSError):
    """find did not look through the folder (missing, killed, hung, or not a find that knows -printf): its answer,
    empty or cut short, would leave uncovered what others may not read."""


class PrivateWalk:
    """find looking under root for what others may not read or enter, started at once; answer() waits for it, at
    most `seconds` (a hung network or FUSE folder). Past `most` entries it is stopped, and answer() raises TooLarge;
    WalkFailed when find did not look through root. A thread reads its records as they come, so find never waits
    on a full pipe."""

    def __init__(self, root: Path, most: int | None = None, seconds: float | None = None) -> None:
        self.root, self.most = root, most
        self.seconds = WALK_SECONDS if seconds is None else seconds
        self._started = time.monotonic()
        self._found: list[Path] | TooLarge | OSError = WalkFailed(f"find did not look through {root}")
        self._reading = threading.Thread(target=self._read, name="fleet-private-walk", daemon=True)
        try:
            self._find: subprocess.Popen[bytes] | None = subprocess.Popen(
                [required_program("find", os.environ.get("PATH")), os.fspath(root), "-mindepth", "1", *_EXPRESSION],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a folder it may not read: nothing there to cover for its user
            )
        except OSError as exc:  # not on the PATH, or no process to be had: answered as a failed walk
            self._find, self._found = None, WalkFailed(f"find did not start: {exc}")
        self._reading.start()

    def done(self) -> bool:
        """Whether answer() answers at once: find is over, or has had its `seconds`."""
        return not self._reading.is_alive() or time.monotonic() - self._started > self.seconds

    def answer(self) -> list[Path]:
        self._reading.join(max(0.0, self._started + self.seconds - time.monotonic()))
        if self._reading.is_alive() and self._find is not None:
            self._find.kill()
            raise WalkFailed(f"find did not look through {self.root} within {self.seconds:g} s")
        if isinstance(self._found, Exception):
            raise self._found
        return self._found

    def _read(self) -> None:
        if self._find is None or self._find.stdout is None:
            return
        chunks, looked_at = [], 0
        with self._find:
            while chunk := self._find.stdout.read(_CHUNK):
                looked_at += chunk.count(b"\0")
                if self.most is not None and looked_at > self.most:
                    self._find.kill()
                    self._found = TooLarge(f"{self.root} holds more than {self.most} entries")
                    return
                chunks.append(chunk)
        output = b"".join(chunks)
        if (why := _failed(self._find.returncode, output)) is not None:
            self._found = WalkFailed(f"find did not look through {self.root}: {why}")
            return
        self._found = [Path(os.fsdecode(record[1:])) for record in output.split(b"\0") if record]


def _failed(returncode: int, output: bytes) -> str | None:
    """Why find's output is no answer: killed, or ended in a record cut short, or an error before looking at anything
    (exit 1 with records is a folder removed or unreadable on the way, as when a toolchain changes during a walk)."""
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if returncode > 1 or (returncode == 1 and not output):
        return f"exit status {returncode}"
    if output and not output.endswith(b"\0"):
        return "its last record was cut short"
    return None


def private_in(root: Path, most: int | None = None) -> list[Path]:
    """What under root others may not read or enter, the highest such folder for what it holds; TooLarge once more
    than `most` entries were looked at."""
    return PrivateWalk(root, most).answer()
