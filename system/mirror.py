"""A bare mirror of each registered repository per worker host, so agents never touch the user's repository."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from system.credentials import shown_url
from system.git import GitError, git

SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
HEX_SHA = re.compile(r"[0-9a-f]{4,64}")
FULL_SHA_LENGTHS = (40, 64)
FETCH_TIMEOUT_SECONDS = 1800.0
BRANCHES_REFSPEC = "+refs/heads/*:refs/heads/*"
# --update-head-ok: an agent may check a branch out in its worktree; that must not block fetches for everyone.
BRANCH_FETCH_FLAGS = ("--no-tags", "--quiet", "--update-head-ok", "--end-of-options")
TAGS_REFSPEC = "+refs/tags/*:refs/tags/*"
# The URL schemes a repository may be registered with; git's `ext::` and other transports that run commands are
# refused, and so is a host starting with "-" (read by ssh as an option). scp-like `user@host:path` is ssh.
URL = re.compile(r"(?P<scheme>git|https?|ssh|file)://(?P<host>[^/]*)(?P<path>/.*)", re.IGNORECASE)
SCP_LIKE = re.compile(r"(?P<user>[^/@:]+)@(?P<host>[^/:]+):(?P<path>.+)")
# The mirror's own attributes, which outrank every .gitattributes of a checkout: a diff's `*.py binary` (or `-diff`)
# made git write its source changes as a base85 binary patch, drawn for a reviewer as "+0 -0". `!diff` leaves the
# choice to git's look at the content (a NUL byte makes a file binary). `!filter`: no filter driver's command runs,
# whatever a checkout's attributes name: a host's git config may define one (git-lfs's `filter.lfs.process`, which
# fetches from the URL a `.lfsconfig` gives), and git runs it outside any sandbox on the files an agent wrote, when
# taking their diff, applying it or resetting the slot; the files are diffed, tested and landed as stored. Written
# into every mirror a process uses (verification/attributes.py refuses a diff's other conversions).
OWN_ATTRIBUTES = "* !diff !filter\n"
_attributed: set[Path] = set()


def is_url(source: str) -> bool:
    """True when source names a repository by URL (scheme://... or scp-like user@host:path), not by a folder."""
    return "://" in source or SCP_LIKE.fullmatch(source) is not None


def password_in(url: str) -> bool:
    """True when a URL carries a password or token (https://user:token@host/...): refused, never stored."""
    match = URL.fullmatch(url)
    return match is not None and ":" in match["host"].rpartition("@")[0]


def check_url(source: str) -> str | None:
    """Why source is not a URL Fleet fetches from, or None when it is one."""
    if any(c.isspace() or ord(c) < 32 for c in source):
        return "the URL may not hold spaces or control characters"
    scp = SCP_LIKE.fullmatch(source)
    match = URL.fullmatch(source)
    if scp is None and match is None:
        return "use git://, http://, https://, ssh://, file:// or user@host:path"
    if password_in(source):
        return "a URL may not carry a password or token: set FLEET_GIT_TOKEN or use a credential helper"
    host = scp["host"] if scp is not None else match["host"].rsplit("@", 1)[-1]  # type: ignore[index]
    if host.startswith("-") or (scp is not None and scp["user"].startswith("-")):
        return "the host may not start with '-'"
    if match is not None and match["scheme"].lower() != "file" and not host:
        return "the URL names no host"
    return None


class MirrorError(Exception):
    """The mirror could not be made to contain the wanted commit (its text shows no URL's password)."""

    def __init__(self, source: str, sha: str, reason: str) -> None:
        self.source = source
        self.sha = sha
        self.reason = shown_url(reason)
        super().__init__(f"cannot get commit {sha} from {shown_url(source)}: {self.reason}")


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold a blocking exclusive flock on path (created if missing) for the block; safe across threads and processes."""
    with _blocking_lock(path, fcntl.LOCK_EX):
        yield


@contextmanager
def shared_lock(path: Path) -> Iterator[None]:
    """Hold a blocking shared flock on path (created if missing) for the block: beside other shared holders,
    never beside an exclusive one."""
    with _blocking_lock(path, fcntl.LOCK_SH):
        yield


@contextmanager
def _blocking_lock(path: Path, operation: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One open file description per holder: flock then excludes other threads of this process too.
    with open(path, "a+b") as handle:
        fcntl.flock(handle, operation)
        yield


def try_lock(path: Path, shared: bool = False) -> IO[bytes] | None:
    """A non-blocking flock on path (created if missing): the open file, held until closed, or None when taken.

    Lock files are never deleted: unlinking one while another process holds it open lets two holders in.
    """
    handle = open(path, "a+b")  # noqa: SIM115 - the caller closes it to release the lock
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def mirror_path(mirrors_dir: Path, repo_key: str) -> Path:
    """Where the bare mirror of repo_key lives: <mirrors_dir>/<repo_key>.git."""
    if not SAFE_KEY.fullmatch(repo_key) or ".." in repo_key:
        raise ValueError(f"unsafe repository key: {repo_key!r}")
    return mirrors_dir.resolve() / f"{repo_key}.git"


def ensure_mirror(mirrors_dir: Path, repo_key: str, source: str, sha: str) -> Path:
    """Return the bare mirror of source that contains commit sha, cloning or fetching under a lock as needed."""
    mirror = mirror_path(mirrors_dir, repo_key)
    _check_source_and_sha(source, sha)
    if not has_commit(mirror, sha):
        with exclusive_lock(mirror.with_name(f"{repo_key}.lock")):
            if not _is_bare_repo(mirror):
                _clone(mirror, source, sha)
            if not has_commit(mirror, sha):
                _fetch(mirror, source, sha)
    if mirror not in _attributed:  # a mirror an earlier version made has none
        own_attributes(mirror)
        _attributed.add(mirror)
    return mirror


def own_attributes(mirror: Path) -> None:
    """Write the mirror's info/attributes (OWN_ATTRIBUTES) unless it holds them already; the file goes into place
    by a rename, so no git call reads half of it."""
    path = mirror / "info" / "attributes"
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == OWN_ATTRIBUTES:
            return
    path.parent.mkdir(exist_ok=True)
    handle, fresh = tempfile.mkstemp(prefix=".attributes-", dir=path.parent)  # a name of its own: threads and
    with os.fdopen(handle, "w") as out:  # processes may write it at once, the last rename wins, all the same
        out.write(OWN_ATTRIBUTES)
    os.replace(fresh, path)


def has_commit(repo: Path, sha: str) -> bool:
    """True when repo exists and holds sha as a commit."""
    if not (repo / "HEAD").is_file():
        return False
    try:
        git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo)
    except GitError:
        return False
    return True


def _check_source_and_sha(source: str, sha: str) -> None:
    if not source or source.startswith("-"):
        raise MirrorError(source, sha, "not a usable repository location")
    if not HEX_SHA.fullmatch(sha):
        raise MirrorError(source, sha, "not a hexadecimal commit id")


def _is_bare_repo(path: Path) -> bool:
    if not (path / "HEAD").is_file():
        return False
    try:
        return git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    except GitError:
        return False


def _clone(mirror: Path, source: str, sha: str) -> None:
    """Clone into a temporary folder and rename, so a half-made mirror is never seen (even after kill -9).

    --no-local: a local source is cloned through git's pack transport, not by hard-linking its object files,
    so the mirror shares no file with the user's repository and holds one pack, from which each sandboxed
    agent's git dir is cut in milliseconds (workers/agent_git.py) even for a repository of loose objects.
    """
    mirror.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{mirror.name}.", dir=mirror.parent))
    try:
        git(
            "clone",
            "--bare",
            "--no-local",
            "--no-tags",
            "--quiet",
            "--",
            source,
            str(tmp),
            cwd=mirror.parent,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
        if mirror.exists():  # a broken leftover: we hold the lock, nobody else uses it
            shutil.rmtree(mirror)
        os.rename(tmp, mirror)
    except GitError as exc:
        raise MirrorError(source, sha, f"clone failed: {exc.stderr or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(mirror: Path, source: str, sha: str) -> None:
    """Fetch all branches; if the commit is on none of them, ask for it by id."""
    try:
        git("fetch", *BRANCH_FETCH_FLAGS, source, BRANCHES_REFSPEC, cwd=mirror, timeout=FETCH_TIMEOUT_SECONDS)
    except GitError as exc:
        raise MirrorError(source, sha, f"fetch failed: {exc.stderr or exc}") from exc
    if has_commit(mirror, sha):
        return
    if len(sha) not in FULL_SHA_LENGTHS:
        raise MirrorError(source, sha, "not on any branch (give the full commit id to fetch it directly)")
    try:
        git("fetch", "--no-tags", "--quiet", "--end-of-options", source, sha, cwd=mirror, timeout=FETCH_TIMEOUT_SECONDS)
    except GitError as exc:
        raise MirrorError(source, sha, f"no such commit ({exc.stderr or exc})") from exc
    if not has_commit(mirror, sha):
        raise MirrorError(source, sha, "fetched, but the object is not a commit")


def refresh_mirror(mirrors_dir: Path, repo_key: str, source: str) -> Path:
    """The bare mirror of source with its branches and tags as they are now (cloned or fetched under the lock)."""
    mirror = mirror_path(mirrors_dir, repo_key)
    _check_source_and_sha(source, "0000")
    with exclusive_lock(mirror.with_name(f"{repo_key}.lock")):
        if not _is_bare_repo(mirror):
            _clone(mirror, source, "HEAD")
        try:
            git(
                "fetch",
                "--prune",
                *BRANCH_FETCH_FLAGS,
                source,
                BRANCHES_REFSPEC,
                TAGS_REFSPEC,
                cwd=mirror,
                timeout=FETCH_TIMEOUT_SECONDS,
            )
        except GitError as exc:
            raise MirrorError(source, "HEAD", f"fetch failed: {exc.stderr or exc}") from exc
    return mirror
