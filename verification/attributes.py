"""A diff may not change how git converts files between their commit and a checkout, or merges them (its
`.gitattributes`), except to stop converting or merging them.

A reviewer reads a diff as git stores it. A checkout holds what the attributes in force make of it: `eol=crlf` and
`text` end lines otherwise, `working-tree-encoding` re-encodes (ISO-2022-JP writes a string of kanji shown to the
reviewer as ASCII bytes that Python reads as a quote, code and a comment), `ident` writes a hash in, and `filter`
names a command a host's git config may define (git-lfs's, which fetches from the URL a `.lfsconfig` gives; Fleet's
own git runs none, system/mirror.py). Verification's `git apply` writes the diff's files as stored, but the merge
queue's checkout of the build and everyone who checks the delivered branch out get the converted bytes. Once landed,
`merge=union` makes every later merge keep both sides of a conflict, untested, where git would have stopped. So a
diff whose `.gitattributes` changes a line setting any attribute but those that change no byte of a checkout or a
merge is refused; a repository's own attributes stay in force (a `*.bat eol=crlf` of its own files), as before.

A line that only unsets `text` or `merge` (`*.png binary`, `*.dat -text`) may be added anywhere: wherever it wins,
a checkout holds the stored bytes, and a later merge of the file stops at a conflict instead of merging it (Fleet
itself merges nothing: the merge queue applies diffs, workers/merge_git.py). Removing or moving one is a change, as
it may let a conversion through again. Unsetting text is refused where the base's attributes set `eol=crlf`: git
rewrites no file of a checkout whose blob is the same, so the files tested keep their CRLF, and a new checkout of the
delivered branch would hold LF.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from system.git import GitError, checkout_git, checkout_git_bytes
from verification.patch import PatchRefused

ATTRIBUTES_FILE = ".gitattributes"
MACRO = "[attr]"  # a line defining a macro; git reads one only in the top-level file
# Attributes that change no byte git writes into a checkout or a merge: what `git diff`, `git archive`, packing and
# the forges' language statistics make of a file. Any other (text, eol, crlf, working-tree-encoding, ident, filter,
# merge, a macro of the repository's own, one git adds later) may: a line naming one is compared.
INERT = frozenset({"diff", "whitespace", "delta", "export-ignore", "export-subst", "conflict-marker-size", "encoding"})
INERT_PREFIXES = ("linguist-", "gitlab-")
# Fields that only unset: no end-of-line conversion, no textual merge; `binary` is git's macro `-diff -merge -text`.
UNSETTING = frozenset({"-text", "-merge", "binary"})
UNSETTING_TEXT = frozenset({"-text", "binary"})
CRLF = "eol=crlf"
ESC = "surrogateescape"
BLANKS = re.compile(r"[ \t\r]+")  # what git splits an attributes line at (a line ends at a newline only)

Line = tuple[str, bool]  # a line as git reads it (its runs of blanks made one), and whether it only unsets
Kind = Literal["converts", "unsets", "inert"]


def refuse_attribute_changes(checkout: Path, paths: list[str]) -> None:
    """PatchRefused when the diff applied to checkout's index (whose HEAD is the base) changed a converting line of
    a `.gitattributes` file among paths (both sides of a rename included), added, removed or moved, or added one
    that unsets text where the base's attributes set `eol=crlf` (found with a git call for each of its files)."""
    changed = [path for path in paths if path.rsplit("/", 1)[-1] == ATTRIBUTES_FILE]
    if not changed:
        return
    macros = defined_macros(_blob(checkout, f"HEAD:{ATTRIBUTES_FILE}"), _blob(checkout, f":{ATTRIBUTES_FILE}"))
    crlf = functools.cache(lambda: _ends_lines_crlf(checkout, changed))
    for path in changed:
        reason = refusal(path, _blob(checkout, f"HEAD:{path}"), _blob(checkout, f":{path}"), macros, crlf)
        if reason is not None:
            raise PatchRefused(reason)


def refusal(
    path: str, before: str, after: str, macros: frozenset[str], crlf: Callable[[], bool] = lambda: False
) -> str | None:
    """Why the attributes file at path may not go from before to after, or None; macros: the names the top-level
    file defines, before or after (a line setting one is compared, whatever its name); crlf: whether attributes
    of the base end lines with CRLF in a checkout (asked only of a line added that unsets text)."""
    changed, added = _first_change(_compared(before, macros), _compared(after, macros))
    if changed is not None:
        return (
            f"the diff changes how git checks out or merges files ({path}: {changed!r}): a checkout of it would"
            " not hold the bytes the diff shows; only attributes that change neither may be changed, and lines that"
            " only unset text or merge (-text, -merge, binary) added"
        )
    unsets_text = next((line for line in added if UNSETTING_TEXT & set(line.split(" ")[1:])), None)
    if unsets_text is not None and crlf():
        # A checkout git made before keeps its converted bytes (git rewrites no file whose blob is the same): what
        # verification and a reused merge build test; a fresh checkout of the delivered branch holds other bytes.
        return (
            f"the diff unsets text where the repository's own attributes end lines with CRLF ({path}:"
            f" {unsets_text!r}): the files tested were checked out with CRLF, a new checkout of it holds LF"
        )
    return None


def defined_macros(*texts: str) -> frozenset[str]:
    """The names of the macros attributes files define (`[attr]name ...`)."""
    lines = (BLANKS.split(raw.strip(" \t\r"), 1)[0] for text in texts for raw in text.split("\n"))
    return frozenset(line[len(MACRO) :] for line in lines if line.startswith(MACRO))


def _first_change(old: list[Line], new: list[Line]) -> tuple[str | None, list[str]]:
    """The first line new adds (other than one that only unsets) or moves, else the first line of old it lacks;
    and the lines new adds that only unset.

    Each line of new is matched to old's next unmatched one where equal (matching early never loses a match a later
    equal line could make: that one could be skipped in its place)."""
    matched, added = 0, []
    for line, unsets in new:
        if matched < len(old) and line == old[matched][0]:
            matched += 1
        elif unsets:
            added.append(line)
        else:
            return line, added
    return (old[matched][0] if matched < len(old) else None), added


def _ends_lines_crlf(checkout: Path, changed: list[str]) -> bool:
    """Whether an attributes file at HEAD sets `eol=crlf` (the one conversion unsetting text undoes on checkout:
    `text` and `text=auto` end lines as stored, LF, on a host whose git configuration asks nothing else)."""
    listed = checkout_git("ls-files", "-z", "--", f":(glob)**/{ATTRIBUTES_FILE}", cwd=checkout, errors=ESC).split("\0")
    for path in dict.fromkeys([*filter(None, listed), *changed]):
        for raw in _blob(checkout, f"HEAD:{path}").split("\n"):
            fields = BLANKS.split(raw.strip(" \t\r"))
            if not fields[0].startswith("#") and CRLF in fields[1:]:
                return True
    return False


def _compared(text: str, macros: frozenset[str]) -> list[Line]:
    """The lines of an attributes file, in order, that set an attribute which may change a checkout's bytes (a
    macro's definition always may) or that unset text or merge."""
    lines = []
    for raw in text.split("\n"):
        fields = [field for field in BLANKS.split(raw) if field]
        if not fields or fields[0].startswith("#"):
            continue
        kinds = {_kind(field, macros) for field in fields[1:]}
        if fields[0].startswith(MACRO) or "converts" in kinds:
            lines.append((" ".join(fields), False))
        elif "unsets" in kinds:
            lines.append((" ".join(fields), True))
    return lines


def _kind(field: str, macros: frozenset[str]) -> Kind:
    """converts, unsets or inert. Only a macro set bare expands (`-name`, `!name`, `name=v` do not): the built-in
    `binary` unsets unless the repository defines its own."""
    if field in macros:
        return "converts"
    if field in UNSETTING:
        return "unsets"
    name = field.lstrip("-!").split("=", 1)[0]
    return "inert" if name in INERT or name.startswith(INERT_PREFIXES) else "converts"


def _blob(checkout: Path, name: str) -> str:
    """The blob git names so (HEAD:path, :path for the index), or "" where there is none."""
    try:
        return checkout_git_bytes("cat-file", "blob", name, cwd=checkout).decode("utf-8", ESC)
    except GitError:
        return ""
