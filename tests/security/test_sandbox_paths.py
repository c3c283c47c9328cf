"""A sandbox binds the real folders behind the paths it is given, links and all, as path.resolve() names them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from system import sandbox
from system.files import private_in
from system.process import run_process
from system.sandbox import View, _real, bwrap_missing, confine


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

    monkeypatch.setattr(sandbox, "private_in", counted)
    sandbox._shown.cache_clear()
    views = [View(tmp_path, readable=(Path(f"/usr/{kind}"),)) for kind in ("bin", "lib")]
    starts = [threading.Thread(target=confine, args=(views[n % 2],)) for n in range(20)]
    for start in starts:
        start.start()
    for start in starts:
        start.join()
    assert walks == [Path("/etc")] * 2  # one a repository's settings: what becomes private later is covered
    sandbox._shown.cache_clear()
