"""Optional bubblewrap isolation of a test run: read-only system; writable checkout, reports and TMPDIR; no network."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

NO_SANDBOX = "tests ran without a sandbox (bubblewrap is not installed)"
BROKEN_SANDBOX = "tests ran without a sandbox (bubblewrap cannot create one here: {})"
PROBE_TIMEOUT = 10.0


def bwrap_prefix(checkout: Path, report_dir: Path, network: bool = False) -> list[str] | None:
    """The argv prefix that runs a command under bwrap, or None when bwrap is absent or unusable."""
    exe = shutil.which("bwrap")
    if exe is None or sandbox_problem(exe) is not None:
        return None
    # The host's /tmp stays visible, read-only like the rest: the interpreter or the test command may live
    # there (a virtualenv in a CI folder under /tmp). Scratch files go to a private TMPDIR instead.
    private_tmp = report_dir.resolve() / "tmp"
    private_tmp.mkdir(parents=True, exist_ok=True)
    args = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in (checkout.resolve(), report_dir.resolve()):
        args += ["--bind", str(path), str(path)]
    args += ["--setenv", "TMPDIR", str(private_tmp)]
    args += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(checkout.resolve())]
    return args if network else [*args, "--unshare-net"]


def sandbox_warning() -> str:
    """Why the last runs had no sandbox, for the verification's warnings."""
    exe = shutil.which("bwrap")
    if exe is None:
        return NO_SANDBOX
    return BROKEN_SANDBOX.format(sandbox_problem(exe) or "unknown")


@lru_cache(maxsize=4)
def sandbox_problem(exe: str) -> str | None:
    """None when `exe` can start a sandbox on this machine (containers often forbid user namespaces)."""
    argv = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")
