"""A diff staged in a clean base checkout for its test run: applied, its environment set up, its protected files put
back to the base. verification/verify.py adds the hidden tests after it; verification/clean_feedback.py stages the
same diff again in the wiped checkout, without them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from subprocess import TimeoutExpired
from typing import TYPE_CHECKING

from system.files import copy_into
from system.git import GitError, GitOutputTooLarge, checkout_git
from verification.attributes import refuse_attribute_changes
from verification.confined import prepare
from verification.envcache import key_files_changed
from verification.environment import SetupFailed, recopy_files
from verification.patch import apply_checked, apply_patch, check_patch
from verification.protect import PYPROJECT_PYTEST, collected_file_globs, protected_changes, pytest_config, restore
from verification.setup_made import setup_made

if TYPE_CHECKING:
    from verification.verify import VerifySpec

SETUP_LEFT = "what the setup left in the checkout could not be read"
WHERE = "the verification checkout"


@dataclass(frozen=True)
class Staged:
    """What staging a diff found: the paths it changes, whether the setup ran its code, the pinned pytest
    configuration, and the protected files it changed that were put back."""

    changed: list[str]
    set_up: bool
    config: str | None
    reverted: list[str]


def stage(checkout: Path, diff: str, spec: VerifySpec, report_dir: Path, cancelled: threading.Event | None) -> Staged:
    """Apply diff to the clean base checkout and set up its environment; raises PatchRefused for a diff git will not
    take and SetupFailed when the environment cannot be made.

    With the environment cache on and the diff leaving its key files alone, the environment is restored
    from the cache (or set up and saved) before the diff is applied, at the pristine base; otherwise the
    setup runs after the diff is applied, as the diff would have it: the diff's code, so before the protected
    files are restored (what it changed among them is restored too).
    """
    # No environment to restore at the pristine base (no cache, or no setup to cache): check and apply at once.
    applied = spec.env_cache is None or not spec.setup_cmd
    changed = apply_patch(checkout, diff) if applied else check_patch(checkout, diff)
    fresh_env = applied or bool(key_files_changed(changed, spec.env_key_files))
    set_up = fresh_env and bool(spec.setup_cmd)  # the diff's code ran in checkout: its setup
    if not fresh_env:
        prepare(checkout, spec, WHERE, cancelled, report_dir, cached=True)
    if not applied:
        apply_checked(checkout, diff)
    refuse_attribute_changes(checkout, changed)
    if fresh_env:  # first: the setup runs the diff's code, which must find no hidden test and restore nothing
        prepare(checkout, spec, WHERE, cancelled, report_dir)
    try:  # what the setup left may stop git (a fifo where git reads) or a copy
        touched = _with_setup_made(checkout, spec, changed) if set_up else changed
    except (GitError, GitOutputTooLarge, TimeoutExpired, SetupFailed, OSError) as exc:
        raise SetupFailed(f"{SETUP_LEFT}: {exc}") from exc
    config = pinned_config(checkout, spec)  # read from HEAD, which applying the diff does not move: once is enough
    reverted = [] if spec.allow_test_edits else restore(checkout, _to_protect(checkout, touched, spec, config))
    return Staged(changed, set_up, config, reverted)


def pinned_config(checkout: Path, spec: VerifySpec) -> str | None:
    """The base's pytest configuration file that runs are pinned to (None: there is none, or pinning is off)."""
    return pytest_config(checkout) if spec.pin_pytest else None


def _with_setup_made(checkout: Path, spec: VerifySpec, changed: list[str]) -> list[str]:
    """The paths restore judges once the setup ran the diff's code in checkout: the diff's, and what the setup
    changed or made that can change the test run (verification/setup_made.py), the files pytest collects tests from
    included; its bytecode and folder links are removed and the repository's copied files copied again, as it may
    have rewritten them."""
    made = setup_made(checkout, [dest for _, dest in spec.copy_files], collected_file_globs(checkout, spec.test_cmd))
    made.remove_caches(checkout)
    recopy_files(spec.copy_files, checkout)
    return sorted({*changed, *made.changed})


def _to_protect(checkout: Path, changed: list[str], spec: VerifySpec, config: str | None) -> list[str]:
    paths = protected_changes(checkout, changed, (*spec.protect, *collected_file_globs(checkout, spec.test_cmd)))
    # The configuration pytest is pinned to must be the base's, whatever the protect patterns say.
    if config in changed and config not in paths:
        pattern = PYPROJECT_PYTEST if config == "pyproject.toml" else config
        paths += protected_changes(checkout, [config], (pattern,))
    return sorted(set(paths))


def add_hidden_tests(checkout: Path, hidden: Path | None) -> list[str]:
    """Copy the hidden tests into checkout (a directory mirroring the repo, or a diff); return their paths."""
    if hidden is None:
        return []
    if hidden.is_file():
        text = hidden.read_text(encoding="utf-8")
        names = checkout_git("apply", "--numstat", "-z", "-", cwd=checkout, input=text)
        checkout_git("apply", "-", cwd=checkout, input=text)
        return sorted(_numstat_names(names))
    files = sorted(p for p in hidden.rglob("*") if p.is_file())
    for source in files:  # never through a link: a diff's build script ran in the checkout before
        copy_into(checkout, source.relative_to(hidden).as_posix(), source)
    return [source.relative_to(hidden).as_posix() for source in files]


def _numstat_names(out: str) -> set[str]:
    return {entry.split("\t", 2)[2] for entry in out.split("\0") if entry.count("\t") >= 2}
