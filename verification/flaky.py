"""A test that passed at the base, failed with the diff and passed on its rerun is flaky, not broken: the verdict does
not count it. The rerun ran in the run's checkout, which the code under test could write: code that breaks only the
first time it runs in a checkout (it leaves a file there, and behaves once it finds it) made its regression look
flaky, and the verdict passed. So a flip that decides the verdict is taken once more in the checkout wiped and staged
anew, the hidden tests added: a test is flaky only if it passes there too. This costs a run only when a rerun flipped
a regression; what the checkout's first run wrote is gone by then, as it would be on any user's first run."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from system.git import GitError
from verification.clean_feedback import wipe
from verification.confined import MAX_RERUN_IDS, fresh_folder, run_confined
from verification.environment import SetupFailed
from verification.judge import Judgement
from verification.patch import PatchRefused
from verification.runner import TestRun
from verification.staging import add_hidden_tests, stage

if TYPE_CHECKING:
    from verification.verify import VerifySpec

FLAKY_FOLDER = "flaky"


def confirmed_flaky(
    checkout: Path,
    diff: str,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None,
    judgement: Judgement,
) -> TestRun | None:
    """The run, in checkout wiped and staged anew, of the tests the judgement took for flaky instead of broken; None
    when there are none. A run that could not be made has no report: none of them is then flaky."""
    flipped = [t for t in judgement.flaky if t not in judgement.still_failing][:MAX_RERUN_IDS]
    if not flipped:
        return None
    folder = fresh_folder(report_dir / FLAKY_FOLDER)
    wipe(checkout)
    try:
        staged = stage(checkout, diff, spec, folder, cancelled)
        add_hidden_tests(checkout, spec.hidden_tests)
    except (SetupFailed, PatchRefused, GitError, OSError):
        return TestRun({}, None, False, "", 0.0)
    command = f"{spec.test_cmd} {shlex.join(flipped)}"
    return run_confined(checkout, spec, folder, command, cancelled, staged.config)
