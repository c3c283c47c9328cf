"""The bare mirror: clone once, fetch new commits, fail clearly, stay consistent under concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from system.git import git
from system.mirror import OWN_ATTRIBUTES, MirrorError, ensure_mirror, has_commit, mirror_path, own_attributes


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", f"add {name}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_clone_is_bare_and_holds_the_commit(tmp_path: Path, source: Path, base_sha: str) -> None:
    mirror = ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), base_sha)
    assert mirror == (tmp_path / "mirrors" / "repo-1.git").resolve()
    assert git("rev-parse", "--is-bare-repository", cwd=mirror).strip() == "true"
    assert has_commit(mirror, base_sha)
    assert ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), base_sha) == mirror
    assert not list((tmp_path / "mirrors").glob(".repo-1.git.*")), "temporary clone folders are cleaned up"


def test_fetches_a_new_branch_commit(tmp_path: Path, source: Path, mirror: Path) -> None:
    new_sha = _commit(source, "new.txt", "new\n")
    assert not has_commit(mirror, new_sha)
    assert ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), new_sha) == mirror
    assert has_commit(mirror, new_sha)


def test_fetches_a_commit_on_no_branch_by_id(tmp_path: Path, source: Path, mirror: Path) -> None:
    git("checkout", "--quiet", "--detach", cwd=source)
    loose_sha = _commit(source, "loose.txt", "on no branch\n")
    git("checkout", "--quiet", "main", cwd=source)
    ensure_mirror(tmp_path / "mirrors", "repo-1", f"file://{source}", loose_sha)
    assert has_commit(mirror, loose_sha)


def test_missing_commit_names_source_and_sha(tmp_path: Path, source: Path, mirror: Path) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(MirrorError) as caught:
        ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), missing)
    assert missing in str(caught.value) and str(source) in str(caught.value)


def test_unreachable_source_is_a_mirror_error(tmp_path: Path, base_sha: str) -> None:
    with pytest.raises(MirrorError, match="clone failed"):
        ensure_mirror(tmp_path / "mirrors", "repo-2", str(tmp_path / "nowhere"), base_sha)
    assert not (tmp_path / "mirrors" / "repo-2.git").exists()


@pytest.mark.parametrize("bad_sha", ["HEAD", "--upload-pack=touch pwned", "main", ""])
def test_refuses_anything_but_a_commit_id(tmp_path: Path, source: Path, bad_sha: str) -> None:
    with pytest.raises(MirrorError, match="not a hexadecimal commit id"):
        ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), bad_sha)


@pytest.mark.parametrize("bad_key", ["../x", "a/b", "", "-x", ".hidden", "a..b"])
def test_refuses_unsafe_repo_keys(tmp_path: Path, bad_key: str) -> None:
    with pytest.raises(ValueError):
        mirror_path(tmp_path, bad_key)


def test_refuses_option_like_sources(tmp_path: Path, base_sha: str) -> None:
    with pytest.raises(MirrorError):
        ensure_mirror(tmp_path / "mirrors", "repo-1", "--upload-pack=touch pwned", base_sha)


def test_concurrent_first_use_clones_once(tmp_path: Path, source: Path, base_sha: str) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def use() -> None:
        try:
            results.append(ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), base_sha))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1 and has_commit(results[0], base_sha)


def test_threads_writing_a_mirrors_own_attributes_at_once_all_succeed(tmp_path: Path) -> None:
    # Every slot of a worker asks for the mirror as the first wave starts: one temporary name for them all made
    # each rename but the first fail, and its attempt end as an error.
    errors: list[BaseException] = []
    for round_ in range(20):
        mirror = tmp_path / f"r{round_}.git"
        mirror.mkdir()
        barrier = threading.Barrier(8)

        def write(where: Path = mirror, start: threading.Barrier = barrier) -> None:
            start.wait()
            try:
                own_attributes(where)
            except OSError as error:
                errors.append(error)

        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (mirror / "info" / "attributes").read_text() == OWN_ATTRIBUTES
        assert [p.name for p in (mirror / "info").iterdir()] == ["attributes"]
    assert errors == []
