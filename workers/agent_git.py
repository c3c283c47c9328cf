"""The git dir an agent sees, sandboxed or not: its own, holding the base commit and nothing later or beside it.

A pooled worktree's `.git` points into the shared bare mirror, where every ticket's base, every later commit and
every fetched branch live, and whose config (core.fsmonitor, core.hooksPath: commands git runs), hooks and refs
every other agent's git would read. So no agent ever gets that pointer. Inside the sandbox it is covered by a
read-only pointer to the agent's own git dir: for an agent whose whole run is one command in the sandbox, one at
SANDBOX_GITDIR, a folder of the sandbox's own memory that bwrap fills (sandbox_gitdir): nothing of it is written
on the host, and it ends with the sandbox; for an agent that starts a sandbox per command (the llm agent), one in
the attempt folder (private_gitdir), bound in writable, so that what one command leaves (a stash, a commit) is
there at the next. Without the sandbox there is nothing to bind over, so the worktree's own `.git` names the
attempt folder's git dir for the agent's run and is put back afterwards (pointed_at). Fleet's own git commands name the
mirror-side git dir and the work tree explicitly (workers/worktree.py), so they never read the agent's `.git` or
its git dir's config either way.

- objects: one pack of the base commit, its tree and its blobs, written by `git pack-objects` straight from the
  mirror (`--shallow` stops at the base commit), once per base commit (base_pack): shown read-only in the
  sandbox (the agent's new objects go beside it, in memory), copied into an unsandboxed agent's git dir. No
  alternates: an alternate object store would let `git cat-file --batch-all-objects` list the mirror's later
  commits.
- `shallow` names the base commit, so history simply ends there; HEAD is detached at it, as in the worktree.
  Both, and the config, are written once per base commit beside its pack (base_files) and copied per attempt.
- the index is a copy of the worktree's own (same commit, fresh stat data), so `git status` starts clean;
  `info/exclude` is the mirror's (files Fleet copies in stay out of the agent's view of changes too).
- a user name and e-mail in its config, so an agent that commits can. Its commits stay in this git dir;
  Fleet diffs the worktree's files against the base commit outside the sandbox (Worktree.diff_bytes), so
  committed and uncommitted edits alike become the diff.

Why the sandbox's memory: a git dir made and deleted on the host per attempt was about twenty files and folders
created and removed per ticket by the worker's threads, in the kernel's time, and on a disk mounted with online
discard (common on cloud machines) every deleted block is discarded as it goes (bench/agent_attempt.py).

Why this and not a clone: `git clone --no-local --depth 1` does the same packing through upload-pack and
index-pack in three more processes, and a temporary repository with a new root commit would change the base
commit's id. One pack-objects run on the sample repository takes about 10 ms (bench/agent_sandbox.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from system.files import remove_tree
from system.git import git

AGENT_CONFIG = """[core]
\trepositoryformatversion = {version}
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
[user]
\tname = Fleet agent
\temail = agent@fleet.invalid
"""
SHA256_EXTENSION = "[extensions]\n\tobjectformat = sha256\n"
AGENT_GITDIR = "agent-git"  # in the attempt folder, deleted with it (an agent without a sandbox)
SANDBOX_GITDIR = Path("/fleet-git")  # inside the sandbox, in its own memory
GITDIR_FOLDERS = ("objects/pack", "objects/info", "refs/heads", "refs/tags", "info")
POINTER = "sandbox-git-pointer"
BASE_PACKS_SUFFIX = ".agent-packs"  # beside the mirror: <key>.git.agent-packs/<base sha>/pack-*.{pack,idx}
BASE_PACKS = 16  # base commits whose packs are kept per mirror
BASE_PACK_IDLE_SECONDS = 3600.0


@dataclass(frozen=True)
class SandboxGitdir:
    """The agent's git dir inside its sandbox, in the sandbox's own memory (system/sandbox.py View.memory)."""

    memory: Path
    folders: tuple[Path, ...]
    copies: tuple[tuple[Path, Path], ...]  # (host file, its writable copy inside)
    read_only: tuple[tuple[Path, Path], ...]  # the base's pack files, and the `.git` pointer over the worktree's


def sandbox_gitdir(mirror: Path, worktree: Path, worktree_gitdir: Path, base_sha: str) -> SandboxGitdir:
    """The git dir a sandboxed agent gets at SANDBOX_GITDIR: nothing of it is written on the host per attempt.

    Its small files are copied in by bwrap from the base's files (made once per base commit beside its pack), the
    worktree's index and the mirror's exclude; the pack is shown read-only, shared by every attempt of the base."""
    packs = base_pack(mirror, base_sha)
    templates = base_files(packs, mirror, base_sha)
    copies = [(templates / name, SANDBOX_GITDIR / name) for name in ("HEAD", "shallow", "config")]
    copies.append((worktree_gitdir / "index", SANDBOX_GITDIR / "index"))
    exclude = mirror / "info" / "exclude"
    if exclude.is_file():
        copies.append((exclude, SANDBOX_GITDIR / "info" / "exclude"))
    read_only = [(packed, SANDBOX_GITDIR / "objects" / "pack" / packed.name) for packed in pack_files(packs)]
    read_only.append((templates / POINTER, worktree / ".git"))
    folders = tuple(SANDBOX_GITDIR / folder for folder in GITDIR_FOLDERS)
    return SandboxGitdir(SANDBOX_GITDIR, folders, tuple(copies), tuple(read_only))


def make_agent_gitdir(mirror: Path, worktree_gitdir: Path, base_sha: str, dest: Path) -> Path:
    """A new git dir at dest (must not exist) with only base_sha's objects, detached at base_sha."""
    for folder in GITDIR_FOLDERS:
        (dest / folder).mkdir(parents=True)
    packs = base_pack(mirror, base_sha)
    for packed in pack_files(packs):  # a copy: the agent may write to its git dir
        shutil.copyfile(packed, dest / "objects" / "pack" / packed.name)
    templates = base_files(packs, mirror, base_sha)
    for name in ("HEAD", "shallow", "config"):
        shutil.copyfile(templates / name, dest / name)
    shutil.copyfile(worktree_gitdir / "index", dest / "index")
    exclude = mirror / "info" / "exclude"
    if exclude.is_file():
        shutil.copyfile(exclude, dest / "info" / "exclude")
    return dest


def pack_files(packs: Path) -> list[Path]:
    return sorted(packs.glob("pack-*"))


def base_files(packs: Path, mirror: Path, base_sha: str) -> Path:
    """The folder of the base's own git dir files (HEAD, shallow, config, and the sandbox's `.git` pointer): the
    base's pack folder, where they are written once (each whole, by a rename) before any attempt copies them."""
    if not (packs / POINTER).is_file():
        sha256 = object_format(mirror) == "sha256"
        config = AGENT_CONFIG.format(version=1 if sha256 else 0) + (SHA256_EXTENSION if sha256 else "")
        texts = {"HEAD": base_sha + "\n", "shallow": base_sha + "\n", "config": config}
        for name, text in {**texts, POINTER: f"gitdir: {SANDBOX_GITDIR}\n"}.items():  # the pointer last
            _write_whole(packs / name, text)
    return packs


def _write_whole(path: Path, text: str) -> None:
    making = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    making.write_text(text)
    os.replace(making, path)


def base_pack(mirror: Path, base_sha: str) -> Path:
    """The folder of one pack of base_sha's commit, tree and blobs, made once per base commit beside the mirror
    (the objects of a commit never change) and shared by its attempts; the oldest beyond BASE_PACKS go."""
    packs = mirror.with_name(mirror.name + BASE_PACKS_SUFFIX)
    folder = packs / base_sha
    with contextlib.suppress(FileNotFoundError):
        os.utime(folder)  # in use: the last to be dropped
        return folder
    packs.mkdir(exist_ok=True)
    making = Path(tempfile.mkdtemp(prefix=".making-", dir=packs))
    try:
        revisions = f"{base_sha}\n--shallow {base_sha}\n"
        git("pack-objects", "--revs", "--quiet", str(making / "pack"), cwd=mirror, input=revisions)
        with contextlib.suppress(OSError):  # another attempt made it first: theirs is the same pack
            os.rename(making, folder)
    finally:
        remove_tree(making)
    _drop_oldest(packs, keep=BASE_PACKS, made=folder)
    return folder


def _drop_oldest(packs: Path, keep: int, made: Path) -> None:
    """Drop the packs used longest ago beyond keep, but none used in the last hour (an attempt may be copying)."""
    idle_since = time.time() - BASE_PACK_IDLE_SECONDS
    others = []
    for entry in os.scandir(packs):
        with contextlib.suppress(FileNotFoundError):
            if not entry.name.startswith(".") and entry.path != str(made):
                others.append((entry.stat().st_mtime, Path(entry.path)))
    for used, old in sorted(others)[: max(0, len(others) + 1 - keep)]:
        if used < idle_since:
            remove_tree(old)


@functools.lru_cache(maxsize=256)
def object_format(mirror: Path) -> str:
    """The mirror's object format (sha1 or sha256), which never changes: asked of git once per mirror."""
    return git("rev-parse", "--show-object-format", cwd=mirror).strip()


def gitdir_pointer(gitdir: Path, dest: Path) -> Path:
    """A `.git` file at dest naming gitdir: bound over the worktree's own `.git` inside the sandbox."""
    dest.write_text(f"gitdir: {gitdir}\n")
    return dest


def private_gitdir(mirror: Path, worktree_gitdir: Path, base_sha: str, attempt_dir: Path) -> Path:
    """The attempt's own git dir, made afresh at attempt_dir/agent-git: the only one its agent's git commands see."""
    dest = attempt_dir / AGENT_GITDIR
    remove_tree(dest)  # left by an earlier delivery of the same attempt
    return make_agent_gitdir(mirror, worktree_gitdir, base_sha, dest)


@contextmanager
def pointed_at(worktree: Path, gitdir: Path) -> Iterator[Path]:
    """For the block, the worktree's own `.git` names gitdir; then the original `.git` is put back as it was.

    For an agent without a sandbox. Whatever the agent left at `.git` (another pointer, a folder, a link) is
    replaced, so Worktree.diff_bytes() finds the pointer it checked out; if the worker dies first, the next lease
    finds a `.git` that is not the mirror's and makes the slot again (WorktreePool._reuse).
    """
    dot_git = worktree / ".git"
    original = dot_git.read_bytes()
    gitdir_pointer(gitdir, dot_git)
    try:
        yield gitdir
    finally:
        # Put back in one rename: while `.git` is missing, another slot's `git worktree prune` drops this one.
        if dot_git.is_dir() and not dot_git.is_symlink():
            remove_tree(dot_git)
        restored = dot_git.with_name(".git.fleet-restore")
        restored.write_bytes(original)
        os.replace(restored, dot_git)
