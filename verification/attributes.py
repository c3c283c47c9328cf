"""A diff may not change how git converts files between their commit and a checkout, or merges them (its
`.gitattributes`).

A reviewer reads a diff as git stores it. A checkout holds what the attributes in force make of it: `eol=crlf` and
`text` end lines otherwise, `working-tree-encoding` re-encodes (ISO-2022-JP writes a string of kanji shown to the
reviewer as ASCII bytes that Python reads as a quote, code and a comment), `ident` writes a hash in, and `filter`
names a command a host's git config may define (git-lfs's, which fetches from the URL a `.lfsconfig` gives; Fleet's
own git runs none, system/mirror.py). Verification's `git apply` writes the diff's files as stored, but the merge
queue's checkout of the build and everyone who checks the delivered branch out get the converted bytes. Once landed,
`merge=union` makes every later merge keep both sides of a conflict, untested, where git would have stopped. So a
diff whose `.gitattributes` changes a line setting any attribute but those that change no byte of a checkout or a
merge is refused; a repository's own attributes stay in force (a `*.bat eol=crlf` of its own files), as before.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from system.git import GitError, git_bytes
from verification.patch import PatchRefused

ATTRIBUTES_FILE = ".gitattributes"
# Attributes that change no byte git writes into a checkout or a merge: what `git diff`, `git archive`, packing and
# the forges' language statistics make of a file. Any other (text, eol, crlf, working-tree-encoding, ident, filter,
# merge, the `binary` macro, a macro of the repository's own, one git adds later) may: a line naming one is compared.
INERT = frozenset({"diff", "whitespace", "delta", "export-ignore", "export-subst", "conflict-marker-size", "encoding"})
INERT_PREFIXES = ("linguist-", "gitlab-")
BLANKS = re.compile(r"[ \t\r]+")  # what git splits an attributes line at (a line ends at a newline only)


def refuse_attribute_changes(checkout: Path, paths: list[str]) -> None:
    """PatchRefused when the diff applied to checkout's index (whose HEAD is the base) changed a converting line of
    a `.gitattributes` file among paths (both sides of a rename included), added, removed or moved."""
    for path in paths:
        if path.rsplit("/", 1)[-1] != ATTRIBUTES_FILE:
            continue
        before, after = _converting(_blob(checkout, f"HEAD:{path}")), _converting(_blob(checkout, f":{path}"))
        if before != after:
            changed = next(new or old for old, new in itertools.zip_longest(before, after) if old != new)
            raise PatchRefused(
                f"the diff changes how git checks out or merges files ({path}: {changed!r}): a checkout of it would"
                " not hold the bytes the diff shows; only attributes that change neither may be changed"
            )


def _converting(text: str) -> list[str]:
    """The lines of an attributes file, in order, that set an attribute which may change a checkout's bytes (a
    macro's definition always may); each with its runs of blanks made one, as git reads it."""
    lines = []
    for raw in text.split("\n"):
        fields = [field for field in BLANKS.split(raw) if field]
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("[attr]") or not all(_inert(field) for field in fields[1:]):
            lines.append(" ".join(fields))
    return lines


def _inert(field: str) -> bool:
    name = field.lstrip("-!").split("=", 1)[0]
    return name in INERT or name.startswith(INERT_PREFIXES)


def _blob(checkout: Path, name: str) -> str:
    """The blob git names so (HEAD:path, :path for the index), or "" where there is none."""
    try:
        return git_bytes("cat-file", "blob", name, cwd=checkout).decode("utf-8", "surrogateescape")
    except GitError:
        return ""
