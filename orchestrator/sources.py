"""Where a repository is read from: a folder on this machine, or a URL that every host fetches from.

A team's hosts share no files, so a repository registered by URL is read through a bare mirror of the URL in
this host's FLEET_HOME (fetched when a ticket names a base ref), never by a path the workers would have to share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.errors import FleetError
from orchestrator.gitrepo import NoCommit, committed_file, repository_root, resolve_commit
from system.credentials import shown_url
from system.mirror import MirrorError, check_url, is_url, password_in, refresh_mirror


def checked_source(given: str) -> str:
    """The source to store: a URL as given (once checked), else the repository's own folder, made absolute."""
    if is_url(given):
        problem = check_url(given)
        if problem is not None:
            shown = "the URL" if password_in(given) else repr(given)  # a password is never echoed
            raise FleetError(f"{shown} is not a repository URL Fleet can fetch: {problem}")
        return given
    path = Path(given).expanduser().resolve()
    if not path.exists():
        raise FleetError(f"{given} does not exist")
    root = repository_root(path)
    if root is None:
        raise FleetError(f"{given} is not a git repository (`git init` it and commit, or give the repository's folder)")
    if root != path:
        raise FleetError(f"{given} is inside the git repository {root}; register {root} itself")
    try:
        resolve_commit(path, "HEAD")
    except NoCommit:
        raise FleetError(f"{given} has no commit yet: commit the code and its tests, then add it") from None
    return str(path)


def settings_text(source: str) -> str | None:
    """`.fleet.toml` at the repository's HEAD: read in place from a folder, from a fresh mirror for a URL."""
    if not is_url(source):
        return committed_file(Path(source), "HEAD", ".fleet.toml")
    with tempfile.TemporaryDirectory(prefix="fleet-probe-") as tmp:
        mirror = _fetched(Path(tmp), "probe", source)
        return committed_file(mirror, "HEAD", ".fleet.toml")


class BaseRefs:
    """Resolves tickets' base refs to commits, each once per batch; a URL's mirror is fetched once per repository."""

    def __init__(self, mirrors_dir: Path) -> None:
        self.mirrors_dir = mirrors_dir
        self._fetched: dict[str, Path] = {}
        self._resolved: dict[tuple[str, str], str] = {}

    def resolve(self, repo_id: int, source: str, ref: str, repo_name: str) -> str:
        """The full sha of ref in the repository; one `error:` line when there is no such commit or no answer."""
        if (source, ref) not in self._resolved:
            try:
                self._resolved[(source, ref)] = resolve_commit(self._readable(repo_id, source), ref)
            except NoCommit:
                shown = shown_url(source)
                raise FleetError(f"base ref {ref!r} does not exist in repo {repo_name!r} ({shown})") from None
        return self._resolved[(source, ref)]

    def _readable(self, repo_id: int, source: str) -> Path:
        if not is_url(source):
            return Path(source)
        if source not in self._fetched:
            self._fetched[source] = _fetched(self.mirrors_dir, f"repo-{repo_id}", source)
        return self._fetched[source]


def _fetched(mirrors_dir: Path, key: str, source: str) -> Path:
    try:
        return refresh_mirror(mirrors_dir, key, source)
    except MirrorError as exc:
        last_line = (exc.reason.strip().splitlines() or ["no answer"])[-1]
        raise FleetError(shown_url(f"cannot fetch {source}: {last_line}")) from None
