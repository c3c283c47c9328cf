"""A sandbox binds the real folders behind the paths it is given, links and all, as path.resolve() names them."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from system import covers, private_walk, sandbox
from system.private_walk import PrivateWalk, private_in
from system.process import run_process
from system.sandbox import View, _real, bwrap_missing, confine
from system.sandbox_start import COVER_SLOT


def test_a_path_is_named_as_resolve_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (tmp_path / "via").symlink_to(real)
    (real / "leaf").symlink_to(real / "inner")
    for path in (
        real / "inner",
        tmp_path / "via" / "inner",  # a link among the folders
        real / "leaf",  # a link at the end
        tmp_path / "via" / "leaf" / "missing",  # both, and nothing there yet
        tmp_path / "via" / ".." / "real",
    ):
        assert _real(path) == path.resolve(), path
    monkeypatch.chdir(tmp_path)
    assert _real(Path("via/inner")) == (real / "inner").resolve()


def test_a_last_part_that_becomes_a_link_is_named_by_its_new_target(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "reports", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    assert _real(folder) == folder.resolve()
    folder.rmdir()
    folder.symlink_to(elsewhere)  # what code under test could do to a folder it could write
    assert _real(folder) == elsewhere.resolve()


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")
def test_a_sandbox_writes_the_real_folder_behind_a_linked_path(tmp_path: Path) -> None:
    real = tmp_path / "checkout"
    real.mkdir()
    linked = tmp_path / "link"
    linked.symlink_to(real)
    wrapper = confine(View(workdir=linked, writable=(linked,)))
    done = run_process(
        [*wrapper, "sh", "-c", "pwd > where && echo ok"], cwd=linked, env={"PATH": os.defpath}, timeout=60
    )
    assert done.ok, done.output
    assert (real / "where").read_text().strip() == str(real.resolve())


def test_sandboxes_started_at_once_look_through_etc_once_for_their_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hundred slots start their sandboxes together; each built the sandbox's shown part, /etc's walk included,
    # before the first was kept: 10 s of CPU where one walk costs 20 ms. Two settings here, ten starts each.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    walks: list[Path] = []

    def counted(root: Path) -> list[Path]:
        walks.append(root)
        time.sleep(0.05)  # another start comes meanwhile
        return private_in(root)

    monkeypatch.setattr(covers, "private_in", counted)
    sandbox._shown.cache_clear()
    views = [View(tmp_path, readable=(Path(f"/usr/{kind}"),)) for kind in ("bin", "lib")]
    starts = [threading.Thread(target=confine, args=(views[n % 2],)) for n in range(20)]
    for start in starts:
        start.start()
    for start in starts:
        start.join()
    assert walks == [Path("/etc")] * 2  # one a repository's settings: what becomes private later is covered
    sandbox._shown.cache_clear()


def test_a_toolchain_is_looked_through_once_and_one_too_large_to_look_through_is_covered_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every repository's settings show the same toolchains (~/.pyenv: 130,000 entries, most of a second to look
    # through): each is looked through once per worker process. One past the bound is covered, never shown unlooked.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    small, large = tmp_path / "small", tmp_path / "large"
    (small / "bin").mkdir(parents=True)
    (large / "lib").mkdir(parents=True)
    for n in range(20):
        (large / "lib" / f"m{n}.py").write_text("")
    walks = counted_walks(monkeypatch)
    monkeypatch.setattr(covers, "MOST_LOOKED_AT", 10)
    sandbox._shown.cache_clear()
    for repository in ("a", "b"):
        argv = confine(View(tmp_path, readable=(small, large), hidden=(tmp_path / repository,)))
        pairs = list(zip(argv, argv[1:], strict=False))
        assert (COVER_SLOT, str(large.resolve())) in pairs and (COVER_SLOT, str(small.resolve())) not in pairs
    assert walks.count(small.resolve()) == 1 and walks.count(large.resolve()) == 1
    sandbox._shown.cache_clear()


def test_a_toolchain_the_worker_looks_through_as_it_starts_is_not_looked_through_again_by_a_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker looks through the toolchains on its PATH beside its own start (most of a second for a ~/.pyenv); a
    # first sandbox asking for one meanwhile waits for that walk's answer rather than walking it a second time.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    toolchain = tmp_path / "toolchain"
    (toolchain / "bin").mkdir(parents=True)
    (toolchain / "pip.conf").write_text("[global]\nindex-url = https://user:token@index.example/simple\n")
    (toolchain / "pip.conf").chmod(0o600)
    walks = counted_walks(monkeypatch)
    sandbox.look_through_toolchains(str(toolchain / "bin"))  # returns at once: the walk runs in a process of its own
    assert walks.count(toolchain.resolve()) == 1
    assert covers.private_shown(toolchain.resolve()) == (toolchain.resolve() / "pip.conf",)
    assert covers.private_shown(toolchain.resolve()) == (toolchain.resolve() / "pip.conf",)
    assert walks.count(toolchain.resolve()) == 1


def test_a_file_made_private_in_a_toolchain_after_it_was_looked_through_is_covered_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token written into a virtualenv's pip.conf after the worker looked through it was readable by every sandbox
    # until the worker restarted. The toolchains are looked through again every LOOK_AGAIN_SECONDS, in the background.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    toolchain = tmp_path / "venv"
    (toolchain / "bin").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    view = View(workdir=work, writable=(work,), readable=(toolchain,))
    conf = toolchain.resolve() / "pip.conf"
    assert str(conf) not in confine(view)
    conf.write_text("[global]\nindex-url = https://user:token@index.example/simple\n")
    conf.chmod(0o600)
    assert str(conf) not in confine(view)  # the sandboxes keep their covers until it is looked through again
    monkeypatch.setattr(covers, "LOOK_AGAIN_SECONDS", 0.05)
    monkeypatch.setattr(covers._AGAIN, "due", 0.0)
    deadline = time.monotonic() + 30
    while str(conf) not in confine(view) and time.monotonic() < deadline:
        time.sleep(0.05)
    argv = confine(view)
    assert (COVER_SLOT, str(conf)) in list(zip(argv, argv[1:], strict=False))
    done = run_process([*argv, "cat", str(conf)], cwd=work, env={"PATH": os.defpath}, timeout=60)
    assert "token" not in done.output, done.output


def test_a_toolchain_find_did_not_look_through_keeps_its_covers_or_is_shown_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A find that printed nothing (BusyBox's, without -printf) or was killed mid-walk was taken for an answer of
    # nothing private: a look again uncovered a virtualenv's pip.conf, and a first look never covered it.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    toolchain, other, work = tmp_path / "venv", tmp_path / "pyenv", tmp_path / "work"
    for folder in (toolchain, other, work):
        folder.mkdir()
    for conf in (toolchain / "pip.conf", other / "pip.conf"):
        conf.write_text("[global]\nindex-url = https://user:token@index.example/simple\n")
        conf.chmod(0o600)
    view = View(workdir=work, writable=(work,), readable=(toolchain,))
    assert str(toolchain.resolve() / "pip.conf") in confine(view)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "find").write_text(f'#!/bin/sh\n[ "$1" = /etc ] && exec "{shutil.which("find")}" "$@"\nexit 1\n')
    (fake / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    monkeypatch.setattr(covers, "LOOK_AGAIN_SECONDS", 0.05)
    monkeypatch.setattr(covers._AGAIN, "due", 0.0)
    looked_again, deadline = covers.generation(), time.monotonic() + 30
    while covers.generation() == looked_again and time.monotonic() < deadline:
        time.sleep(0.05)
    argv = confine(view)
    done = run_process([*argv, "cat", str(toolchain / "pip.conf")], cwd=work, env={"PATH": os.defpath}, timeout=60)
    assert "token" not in done.output, done.output
    assert covers.private_shown(other.resolve()) == (other.resolve(),)
    assert "find did not look through" in covers.covered_whole([other])[0]


def test_a_toolchain_whose_find_hangs_keeps_its_covers_and_holds_up_no_other_look_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A walk again that never ended (a hung NFS or FUSE folder) kept every toolchain from being looked at again: a
    # file made private later anywhere stayed uncovered until the worker restarted.
    hung = tmp_path / "nfs-venv"
    hung.mkdir()
    (hung / "pip.conf").write_text("token")
    (hung / "pip.conf").chmod(0o600)
    assert covers.private_shown(hung.resolve()) == (hung.resolve() / "pip.conf",)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "find").write_text(
        f'#!/bin/sh\n[ "$1" = "{hung.resolve()}" ] && exec sleep 60\nexec "{shutil.which("find")}" "$@"\n'
    )
    (fake / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    monkeypatch.setattr(private_walk, "WALK_SECONDS", 0.5)
    monkeypatch.setattr(covers, "LOOK_AGAIN_SECONDS", 0.05)
    monkeypatch.setattr(covers._AGAIN, "due", 0.0)
    looked_again, deadline = covers.generation(), time.monotonic() + 20
    while covers.generation() == looked_again and time.monotonic() < deadline:
        time.sleep(0.05)
    assert covers.generation() > looked_again
    assert covers.private_shown(hung.resolve()) == (hung.resolve() / "pip.conf",)


def counted_walks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The toolchains' walks started from now on, by their folder."""
    walks: list[Path] = []

    class Counted(PrivateWalk):
        def __init__(self, root: Path, most: int | None = None) -> None:
            walks.append(root)
            super().__init__(root, most)

    monkeypatch.setattr(covers, "PrivateWalk", Counted)
    return walks


def test_a_covered_file_removed_after_its_settings_were_built_fails_no_sandbox(tmp_path: Path) -> None:
    # An owner-only file of a shown toolchain is covered; then it goes (an uninstall, a test's clean-up in /etc).
    # bwrap cannot make its cover in the read-only folder: every sandbox of those settings failed until a restart.
    if bwrap_missing() is not None:
        pytest.skip("bubblewrap cannot run here")
    toolchain, work = tmp_path / "toolchain", tmp_path / "work"
    for folder in (toolchain / "private", work):
        folder.mkdir(parents=True)
    secret = toolchain / "pip.conf"
    secret.write_text("index-token")
    secret.chmod(0o600)
    (toolchain / "private").chmod(0o700)
    view = View(workdir=work, writable=(work,), readable=(toolchain,))
    covered = run_process(
        [*confine(view), "sh", "-c", f"cat {secret}; ls {toolchain / 'private'}"],
        cwd=work,
        env={"PATH": os.defpath},
        timeout=60,
    )
    assert covered.ok and "index-token" not in covered.output, covered.output
    secret.unlink()
    (toolchain / "private").rmdir()
    done = run_process([*confine(view), "echo", "ran"], cwd=work, env={"PATH": os.defpath}, timeout=60)
    assert done.ok and done.output.strip() == "ran", done.output
