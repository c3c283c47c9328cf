"""The pinned install cache of the real agent CLIs: PyPI packages in their own venvs, npm packages in their own prefix.

`python -m tests.realcli.cache` warms it (all CLIs, or the ones named); the `realcli` tests call `ensure(name)`,
which installs on first use and reuses the cache afterwards. The cache lives in $FLEET_REALCLI_CACHE, else
~/.cache/fleet-realcli; one folder per package and version, written to a temporary name and renamed when complete,
so a killed install is never taken for a finished one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT = 1200.0


@dataclass(frozen=True)
class Pin:
    """One CLI at the version it was verified with: where it comes from and the executable it provides."""

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    executable: str


PINS = {
    "aider": Pin("pypi", "aider-chat", "0.86.2", "aider"),
    "mini-swe-agent": Pin("pypi", "mini-swe-agent", "2.4.6", "mini"),
    "codex": Pin("npm", "@openai/codex", "0.171.0", "codex"),
    "claude-code": Pin("npm", "@anthropic-ai/claude-code", "2.1.197", "claude"),
    "gemini": Pin("npm", "@google/gemini-cli", "0.61.0", "gemini"),
    "opencode": Pin("npm", "opencode-ai", "1.18.33", "opencode"),
}


class InstallRefused(Exception):
    """A registry (or its client) would not install a pinned CLI; carries the client's last lines."""


def cache_root() -> Path:
    """Where the cache lives."""
    configured = os.environ.get("FLEET_REALCLI_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fleet-realcli"


def _folder(pin: Pin) -> Path:
    return cache_root() / pin.registry / f"{pin.package.replace('/', '+')}-{pin.version}"


def _bin_dir(pin: Pin, folder: Path) -> Path:
    return folder / ("venv/bin" if pin.registry == "pypi" else "node_modules/.bin")


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise InstallRefused(f"{' '.join(argv[:3])} … exited {done.returncode}:\n{tail}")


def _install_pypi(pin: Pin, into: Path) -> None:
    _run([sys.executable, "-m", "venv", str(into / "venv")])
    # The machine's pip constraints (if any) are for the project's own environment, not for a CLI's pinned tree.
    env = {**os.environ, "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([str(into / "venv/bin/python"), "-m", "pip", "install", "-q", f"{pin.package}=={pin.version}"], env)


def _install_npm(pin: Pin, into: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallRefused("npm is not on PATH")
    into.mkdir(parents=True)
    (into / "package.json").write_text('{"private": true}\n')
    spec = f"{pin.package}@{pin.version}"
    _run([npm, "install", "--prefix", str(into), "--no-audit", "--no-fund", "--save-exact", spec])


def ensure(name: str) -> Path:
    """The path of NAME's executable, installing the pinned version into the cache first if needed."""
    pin = PINS[name]
    folder = _folder(pin)
    executable = _bin_dir(pin, folder) / pin.executable
    if executable.exists():
        return executable
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    (_install_pypi if pin.registry == "pypi" else _install_npm)(pin, partial)
    if not (_bin_dir(pin, partial) / pin.executable).exists():
        raise InstallRefused(f"{pin.package}=={pin.version} installed no `{pin.executable}` executable")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    if pin.registry == "pypi":
        _fix_venv_scripts(partial, folder)
    return executable


def _fix_venv_scripts(old: Path, new: Path) -> None:
    """A venv's scripts name their interpreter by absolute path: point them at the renamed folder."""
    for script in (new / "venv/bin").iterdir():
        if script.is_file() and not script.is_symlink():
            text = script.read_bytes()
            if text.startswith(b"#!") and str(old).encode() in text:
                script.write_bytes(text.replace(str(old).encode(), str(new).encode()))


def main(names: list[str]) -> int:
    """Warm the cache; one line per CLI."""
    failed = 0
    for name in names or list(PINS):
        try:
            print(f"{name}: {ensure(name)}", flush=True)
        except (InstallRefused, subprocess.TimeoutExpired) as refused:
            failed += 1
            print(f"error: {name}: {refused}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
