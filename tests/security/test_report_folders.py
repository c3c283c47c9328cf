"""A rerun's report folder sits in a folder the run before could write: nothing that run left there is followed."""

from __future__ import annotations

from pathlib import Path

from verification.confined import fresh_folder


def test_a_planted_link_is_removed_and_its_target_left_alone(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("mine")
    report = tmp_path / "candidate"
    report.mkdir()
    (report / "rerun").symlink_to(host)
    made = fresh_folder(report / "rerun")
    assert made.is_dir() and not made.is_symlink() and list(made.iterdir()) == []
    assert (host / "keep").read_text() == "mine"


def test_a_planted_file_or_folder_is_replaced_by_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "visible").write_text("not a folder")
    (tmp_path / "rerun" / "inner").mkdir(parents=True)
    (tmp_path / "rerun" / "report.xml").write_text("<testsuite/>")
    for name in ("visible", "rerun"):
        made = fresh_folder(tmp_path / name)
        assert made.is_dir() and list(made.iterdir()) == []
