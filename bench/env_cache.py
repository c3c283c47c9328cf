"""The environment cache benchmark: a fresh setup versus a cache hit, on a repository that installs packages.

    python bench/env_cache.py [--rounds 3]        # needs `pip install -e .[bench]` (setuptools, wheel)

The repository's setup is the README's: `python -m venv .venv && .venv/bin/pip install -e .`, which
installs the project in editable mode and eight packages it depends on (pytest, rich, pygments and what
they need) from a local wheelhouse, with no network: the wheels are repacked from the packages installed
next to Fleet. Each round, side by side:
- bare:   the setup command alone, in a fresh checkout;
- first:  Fleet's setup of a pooled worktree with an empty cache (runs the setup, then saves the entry);
- second: Fleet's setup of another pooled worktree (a cache hit: the entry is copied in and relocated),
          after which the repository's tests run in it and must pass, importing the project from the
          second worktree (so the editable install was relocated).
Prints medians, first/bare and second/bare (target: second under a tenth of bare), and writes JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from system.git import git  # noqa: E402
from system.mirror import ensure_mirror  # noqa: E402
from tests.wheelhouse import build_wheelhouse  # noqa: E402
from verification.envcache import DEFAULT_KEY_FILES, EnvCache  # noqa: E402
from verification.environment import CacheUse, set_up_environment  # noqa: E402
from workers.worktree import WorktreePool  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PACKAGES = ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "rich", "markdown-it-py", "mdurl")
BUILD = ("setuptools", "wheel")
TEST = """import os

from rich.text import Text

import shop


def test_total():
    assert shop.total([1, 2, 3]) == 6
    assert Text("ok").plain == "ok"


def test_the_project_is_imported_from_this_checkout():
    assert shop.__file__.startswith(os.getcwd())
"""


def make_repo(path: Path) -> None:
    deps = ", ".join(f'"{name}=={metadata.version(name)}"' for name in PACKAGES)
    pyproject = (
        f'[project]\nname = "shop"\nversion = "0.1"\ndependencies = [{deps}]\n\n'
        '[build-system]\nrequires = ["setuptools>=64", "wheel"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    files = {
        "pyproject.toml": pyproject,
        "src/shop/__init__.py": "def total(prices):\n    return sum(prices)\n",
        "tests/test_shop.py": TEST,
        ".gitignore": ".venv/\n__pycache__/\n*.egg-info/\n",
    }
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "shop", cwd=path)


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def one_round(work: Path, source: Path, setup: str, env: dict[str, str]) -> dict[str, float]:
    work.mkdir(parents=True)
    bare_checkout = work / "bare"
    git("clone", "-q", str(source), str(bare_checkout), cwd=work)
    mirror = ensure_mirror(work / "mirrors", "shop", str(source), git("rev-parse", "HEAD", cwd=source).strip())
    pool = WorktreePool(work / "pool", mirror, size=2)
    use = CacheUse(EnvCache(work / "envs", max_bytes=2**32), "agent", (), DEFAULT_KEY_FILES)
    sha = git("rev-parse", "HEAD", cwd=source).strip()

    def fleet_setup(path: Path) -> None:
        set_up_environment(path, setup, where="bench", timeout=600, env=env, cache=use)

    bare = timed(lambda: subprocess.run(["/bin/sh", "-c", setup], cwd=bare_checkout, env=env, check=True))
    with pool.lease(sha) as first, pool.lease(sha) as second:
        miss = timed(lambda: fleet_setup(first.path))
        hit = timed(lambda: fleet_setup(second.path))
        test = [str(second.path / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        subprocess.run(test, cwd=second.path, env=env, check=True, capture_output=True)
    return {"bare": bare, "first": miss, "second": hit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-envbench-") as tmp:
        work = Path(tmp)
        wheelhouse = build_wheelhouse(work / "wheelhouse", PACKAGES + BUILD)
        source = work / "shop"
        make_repo(source)
        setup = (
            f"{shlex.quote(sys.executable)} -m venv .venv && .venv/bin/pip install -q --no-index"
            f" --find-links {shlex.quote(str(wheelhouse))} -e ."
        )
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        rounds = [one_round(work / f"round-{n}", source, setup, env) for n in range(args.rounds)]
    medians = {k: statistics.median(r[k] for r in rounds) for k in ("bare", "first", "second")}
    ratios = {"first/bare": medians["first"] / medians["bare"], "second/bare": medians["second"] / medians["bare"]}
    print(f"{'setup':<10}{'median s':>10}{'/ bare':>9}")
    for label in ("bare", "first", "second"):
        print(f"{label:<10}{medians[label]:>10.3f}{medians[label] / medians['bare']:>9.3f}")
    print(f"target: second/bare < 0.1 -> {'met' if ratios['second/bare'] < 0.1 else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"env_cache-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}
    out.write_text(
        json.dumps(
            {"packages": PACKAGES, "rounds": rounds, "medians": medians, "ratios": ratios, "machine": machine}, indent=2
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
