"""The feedback loop on real projects: how soon agents that read their prompt are verified.

    python bench/feedback_loop.py [--attempts 3]

Repositories: real PyPI projects (tests/data) as git repositories with a bug injected in the last commit:
iniconfig (3 failing tests), more-itertools (2), and more-itertools whose suite also carries a failure no diff
can fix (a test reading the uninstalled package's version: a known failure). Each gets one ticket per agent kind,
whose title and body describe the symptom but name no test, driven through the real CLI (embedded mode):
  reads-nothing     changes nothing: the ticket alone does not say what to fix.
  reads-test-name   makes the honest fix only when its prompt names a failing test.
  reads-assertion   makes the honest fix only when its prompt shows the failing assertion's message.
Reports, per kind, the share of tickets verified by attempt 1, 2 and 3, prints a table and writes JSON to
bench/results/. Target: the two kinds that read are verified at attempt 1 on every ticket.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fixture projects' builders live with the tests that use them too

from tests.e2e_verification.helpers import embedded_fleet, read_json  # noqa: E402
from tests.feedback.projects import iniconfig_repo, more_itertools_repo  # noqa: E402
from workers.agents.scripted import INI_FAILING, MI_FAILING, SAMPLE_TEST_CMD, scripted_command  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KINDS = ("reads-nothing", "reads-test-name", "reads-assertion")
# name: (builder, fix script, a failing test's id, a line of its assertion message at the base, ticket text)
REPOS: dict[str, tuple[Any, str, str, str, str]] = {
    "iniconfig": (
        iniconfig_repo,
        "ini-fix",
        INI_FAILING[0],
        "iscommentline(';qwe')",
        "Lines starting with ';' are comments too, but they are not treated as comments.",
    ),
    "more-itertools": (
        more_itertools_repo,
        "mi-fix",
        MI_FAILING[0],
        "['F', 'G'] != ['E', 'F', 'G']",
        "tail() of a list returns one item too few.",
    ),
    "more-itertools+env-failure": (
        lambda dest: more_itertools_repo(dest, env_failure=True),
        "mi-fix",
        MI_FAILING[0],
        "['F', 'G'] != ['E', 'F', 'G']",
        "tail() of a list returns one item too few.",
    ),
}


def agent_cmd(kind: str, fix: str, test_id: str, assertion: str) -> str:
    if kind == "reads-nothing":
        return shlex.join(scripted_command("reads-nothing"))
    needle = test_id if kind == "reads-test-name" else assertion
    return shlex.join(scripted_command("when", needle, fix))


def run_repo(tmp: Path, name: str, attempts: int) -> dict[str, int | None]:
    """Submit one ticket per kind to a fresh Fleet; the attempt each was verified at (None: never)."""
    build, fix, test_id, assertion, body = REPOS[name]
    fleet = embedded_fleet(tmp)
    build(tmp / "repo")
    fleet.run("repo", "add", "r", str(tmp / "repo"), "--test-cmd", SAMPLE_TEST_CMD)
    tickets = [{"title": body, "body": body, "agent_cmd": agent_cmd(k, fix, test_id, assertion)} for k in KINDS]
    (tmp / "batch.json").write_text(json.dumps(tickets))
    ids = [t["id"] for t in fleet.submit("--repo", "r", "--attempts", str(attempts), "--file", str(tmp / "batch.json"))]
    fleet.up(concurrency=3)
    verified: dict[str, int | None] = {}
    for kind, ticket in zip(KINDS, ids, strict=True):
        shown = read_json(fleet, "show", str(ticket))
        passed = [a["number"] for run in shown["runs"] for a in run["attempts"] if a["verdict"] == "passed"]
        verified[kind] = min(passed) if passed else None
    return verified


def shares(outcomes: list[dict[str, int | None]], attempts: int) -> dict[str, list[float]]:
    """Per kind, the share of tickets verified by attempt 1..attempts."""
    return {
        kind: [
            sum(1 for o in outcomes if (n := o[kind]) is not None and n <= k) / len(outcomes)
            for k in range(1, attempts + 1)
        ]
        for kind in KINDS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--attempts", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="fleet-feedback-bench-") as tmp:
        for i, name in enumerate(REPOS):
            outcomes[name] = run_repo(Path(tmp) / str(i), name, args.attempts)
            print(f"{name}: {outcomes[name]}", flush=True)
    table = shares(list(outcomes.values()), args.attempts)
    print(f"\nshare of {len(REPOS)} tickets verified by attempt " + ", ".join(map(str, range(1, args.attempts + 1))))
    for kind, row in table.items():
        print(f"  {kind:<16} " + "  ".join(f"{share:4.0%}" for share in row))
    ok = all(table[kind][0] == 1.0 for kind in KINDS[1:])
    print(f"target (agents that read verified at attempt 1 on every ticket): {'met' if ok else 'NOT met'}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {"outcomes": outcomes, "shares": table, "seconds": round(time.monotonic() - started, 1)}
    (RESULTS / f"feedback_loop-{stamp}.json").write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
