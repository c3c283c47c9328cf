"""What a real sandbox covers in a toolchain it shows: what a user other than its owner could not reach on the host."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from system import covers, sandbox_start
from system.process import ProcessResult, run_process
from system.sandbox import View, bwrap_missing, confine

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

ENV = {"PATH": os.defpath}


def run_in(view: View, script: str, *args: Path) -> ProcessResult:
    """script run by the system's python3 in view's sandbox, with args."""
    argv = [*confine(view), "python3", "-c", script, *map(str, args)]
    return run_process(argv, cwd=view.workdir, env=ENV, timeout=60)


def view_of(tmp_path: Path, toolchain: Path) -> View:
    work = tmp_path / "work"
    work.mkdir()
    return View(workdir=work, writable=(work,), readable=(toolchain,))


def module_in(folder: Path, mode: int, name: str = "module.py") -> Path:
    """A file anyone may read (0644), in a folder of its own with mode."""
    folder.mkdir(parents=True)
    (folder / name).write_text("secret = 'in a folder others may not reach'\n")
    (folder / name).chmod(0o644)
    folder.chmod(mode)
    return folder / name


READ = """
import sys
for path in sys.argv[1:]:
    try:
        print(path, open(path).read().strip())
    except OSError as exc:
        print(path, 'unread:', exc.strerror)
"""


def test_a_file_others_may_read_in_a_folder_they_may_not_list_or_enter_is_covered(tmp_path: Path) -> None:
    # Others on the host reach no file in a folder without o+x, and list none without o+r (its names, a token's say,
    # are its owner's to hand out): the sandbox, its owner in a namespace of its own, showed them.
    toolchain = tmp_path / "pyenv"
    (toolchain / "lib").mkdir(parents=True)
    (toolchain / "lib" / "public.py").write_text("shown = True\n")
    inside = [module_in(toolchain / "lib" / name, mode) for name, mode in (("no-x", 0o744), ("no-r", 0o711))]
    inside.append(module_in(toolchain / "versions" / "keys" / "deeper", 0o755))
    (toolchain / "versions" / "keys").chmod(0o700)
    done = run_in(view_of(tmp_path, toolchain), READ, toolchain / "lib" / "public.py", *inside)
    assert done.ok, done.output
    assert "shown = True" in done.output and "secret" not in done.output, done.output


FILL = """
import sys
try:
    with open(sys.argv[1], "wb") as handle:
        handle.write(bytes(int(sys.argv[2])))
    print("held")
except OSError as exc:
    print("refused:", exc.strerror)
"""


def test_a_covered_folder_holds_next_to_nothing(tmp_path: Path) -> None:
    """A cover is a tmpfs of the sandbox's own, memory no address-space limit counts: unsized, code under test
    without a memory cgroup filled the host's memory through it."""
    toolchain = tmp_path / "pyenv"
    private = toolchain / "keys"
    private.mkdir(parents=True)
    private.chmod(0o700)
    done = run_in(view_of(tmp_path, toolchain), FILL, private / "filler", Path(str(64 * 2**20)))
    assert done.ok and done.output.strip() == "refused: No space left on device", done.output


def test_a_private_folder_of_many_files_is_one_cover_and_the_toolchain_stays_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A folder others may not enter is covered whole, never file by file: its 2,000 files neither reach the bounds
    # of covers and of entries looked at (either shows the whole toolchain empty) nor cost a mount each.
    monkeypatch.setattr(covers, "MOST_COVERS", 5)
    monkeypatch.setattr(covers, "MOST_LOOKED_AT", 100)
    toolchain = tmp_path / "venv"
    (toolchain / "lib").mkdir(parents=True)
    (toolchain / "lib" / "public.py").write_text("shown = True\n")
    cache = toolchain / "cache"
    cache.mkdir()
    for n in range(2_000):
        (cache / f"wheel{n}").write_text("token")
    cache.chmod(0o700)
    assert covers.private_shown(toolchain.resolve()) == (cache.resolve(),)
    listing = READ + f"\nimport os; print('listed', os.listdir({str(cache)!r}))"
    done = run_in(view_of(tmp_path, toolchain), listing, toolchain / "lib" / "public.py", cache / "wheel7")
    assert "shown = True" in done.output and "listed []" in done.output and "token" not in done.output, done.output


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[Path]:
    """An ssh-agent's socket, its owner's alone, listening in a folder on the PATH."""
    folder = tmp_path / "toolchain" / "bin"
    folder.mkdir(parents=True)
    path = folder / "agent.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        path.chmod(0o600)
        listening.listen()
        yield path


CONNECT = """
import os, socket, sys
sock, fifo = sys.argv[1:]
try:
    socket.socket(socket.AF_UNIX).connect(sock)
    print('connected to the agent socket')
except OSError as exc:
    print('no connection:', exc.strerror)
for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
    try:
        os.open(fifo, flags)
        print('opened the fifo')
    except OSError as exc:
        print('no fifo:', exc.strerror)
"""


def test_a_private_socket_or_fifo_in_a_toolchain_is_covered(tmp_path: Path, agent_socket: Path) -> None:
    # An ssh-agent or gpg-agent socket left in a folder on the PATH signed with its owner's keys for any sandbox.
    toolchain = agent_socket.parent.parent
    fifo = toolchain / "bin" / "gpg-fifo"
    os.mkfifo(fifo, 0o600)
    done = run_in(view_of(tmp_path, toolchain), CONNECT, agent_socket, fifo)
    assert done.ok, done.output
    assert "connected" not in done.output and "opened" not in done.output, done.output
    assert done.output.count("no fifo") == 2, done.output


def test_a_cover_removed_after_the_sandbox_was_built_fails_no_command_of_it(tmp_path: Path) -> None:
    # An agent's sandbox prefix serves every command of its attempt. A private file of a shown toolchain removed
    # meanwhile (an uninstall, a virtualenv rebuilt) left bwrap unable to make its cover in the read-only folder:
    # every later command of the attempt failed.
    toolchain = tmp_path / "venv"
    (toolchain / "lib").mkdir(parents=True)
    token = toolchain / "pip.conf"
    token.write_text("index-token")
    token.chmod(0o600)
    private = module_in(toolchain / "lib" / "keys", 0o700).parent
    view = view_of(tmp_path, toolchain)
    prefix = confine(view)
    token.unlink()
    (private / "module.py").unlink()
    private.rmdir()
    done = run_process([*prefix, "echo", "ran"], cwd=view.workdir, env=ENV, timeout=60)
    assert done.ok and done.output.strip() == "ran", done.output
    token.write_text("index-token")  # back, private again: covered by the same prefix
    token.chmod(0o600)
    again = run_process([*prefix, "cat", str(token)], cwd=view.workdir, env=ENV, timeout=60)
    assert "index-token" not in again.output, again.output


def _venv_with_a_token(tmp_path: Path) -> tuple[Path, View]:
    """A toolchain holding an index token only its owner may read, and a sandbox's view that shows it."""
    toolchain = tmp_path / "venv"
    toolchain.mkdir()
    token = toolchain / "pip.conf"
    token.write_text("index-token")
    token.chmod(0o600)
    return token, view_of(tmp_path, toolchain)


def test_a_cover_removed_as_the_sandbox_starts_starts_it_again_without_that_cover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Removed in the moment between the start's look and bwrap's mount, the file failed that command: bwrap said
    # "Can't create file at ...", and the agent's step or the tests' run was lost to it.
    token, view = _venv_with_a_token(tmp_path)
    prefix = confine(view)

    def looked_then_removed(paths: list[Path]) -> list[str]:
        args = covers.cover_args(paths)
        if token in paths:
            token.unlink(missing_ok=True)  # an uninstall, right after the start looked
        return args

    monkeypatch.setattr(sandbox_start, "cover_args", looked_then_removed)
    done = run_process([*prefix, "sh", "-c", "echo ran >> ran.txt"], cwd=view.workdir, env=ENV, timeout=60)
    assert done.ok, done.output
    assert (view.workdir / "ran.txt").read_text() == "ran\n"


def test_a_cover_removed_while_the_command_runs_never_runs_it_again(tmp_path: Path) -> None:
    # Only a sandbox that never ran its command starts again: one that ran it is over, whatever went since.
    token, view = _venv_with_a_token(tmp_path)
    script = "echo ran >> ran.txt; while [ ! -e gone ]; do sleep 0.01; done; exit 1"
    remover = threading.Thread(target=remove_then_mark, args=(token, view.workdir / "gone"))
    remover.start()
    done = run_process([*confine(view), "sh", "-c", script], cwd=view.workdir, env=ENV, timeout=60)
    remover.join()
    assert done.exit_code == 1, done.output
    assert (view.workdir / "ran.txt").read_text() == "ran\n"


def remove_then_mark(path: Path, mark: Path) -> None:
    """Once the command has begun (it writes ran.txt beside mark), remove path, then say so in mark."""
    deadline = time.monotonic() + 30
    while not (mark.parent / "ran.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    path.unlink()
    mark.write_text("")
