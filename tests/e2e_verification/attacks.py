"""Diffs against real projects, verified end to end by Fleet's verify_diff in a clean, confined checkout."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from system.git import git
from tests.e2e_verification.realproject import INI_TEST_CMD, SIX_TEST_CMD, make_iniconfig_repo, make_six_repo
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff
from workers.agents.scripted import INI_BUG, Edit, apply_edits

INI_FIX: tuple[Edit, ...] = tuple((name, new, old) for name, old, new in INI_BUG if new is not None)
INI_BUGGY_LINE = '    return c == "#"\n'
SIX_BUGGY_LINE = '        return s.encode("utf-8")\n'


@dataclass
class Project:
    """A real project at its buggy base commit, with the baseline of its suite."""

    name: str
    repo: Path
    spec: VerifySpec
    baseline: TestRun
    scratch: Path

    def verify(self, edits: tuple[Edit, ...]) -> VerificationResult:
        """The verdict on the diff that edits make to the base, verified in a fresh clone."""
        work = self._clone("agent")
        if apply_edits(edits, work) != len(edits):
            raise AssertionError(f"an edit did not apply to {self.name}: {edits}")
        git("add", "-A", "-N", cwd=work)
        diff = git("diff", cwd=work)
        checkout = self._clone("verify")
        return verify_diff(checkout, diff, self.spec, self.baseline, checkout.parent / "report")

    def _clone(self, role: str) -> Path:
        dest = self.scratch / f"{role}-{next(_counter)}" / self.name
        dest.parent.mkdir(parents=True)
        git("clone", "--quiet", str(self.repo), str(dest), cwd=self.scratch)
        return dest


_counter = itertools.count()
MAKERS: dict[str, tuple[Callable[[Path], str], str]] = {
    "iniconfig": (make_iniconfig_repo, INI_TEST_CMD),
    "six": (make_six_repo, SIX_TEST_CMD),
}


def make_project(name: str, tmp: Path) -> Project:
    """Build the project's repository under tmp and run its baseline once."""
    make, command = MAKERS[name]
    repo = tmp / "repo" / name
    make(repo)
    spec = VerifySpec(test_cmd=command, timeout=300)
    base = tmp / "base" / name
    git("clone", "--quiet", str(repo), str(base), cwd=tmp)
    baseline = run_baseline(base, spec, tmp / "base" / "report")
    assert baseline.failures, f"{name}'s injected bug fails no test: {baseline.output[-2000:]}"
    return Project(name, repo, spec, baseline, tmp)
