"""Optional bubblewrap isolation of a test run: read-only system, writable checkout and report dir, no network."""

from __future__ import annotations

import shutil
from pathlib import Path

NO_SANDBOX = "tests ran without a sandbox (bubblewrap is not installed)"


def bwrap_prefix(checkout: Path, report_dir: Path, network: bool = False) -> list[str] | None:
    """The argv prefix that runs a command under bwrap, or None when bwrap is not installed."""
    exe = shutil.which("bwrap")
    if exe is None:
        return None
    # --tmpfs /tmp comes before the binds, so a checkout under /tmp stays visible on top of it.
    args = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in (checkout.resolve(), report_dir.resolve()):
        args += ["--bind", str(path), str(path)]
    args += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(checkout.resolve())]
    return args if network else [*args, "--unshare-net"]
