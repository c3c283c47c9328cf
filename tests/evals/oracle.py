"""A scripted agent that knows the answers: applies the gold patch of the task its prompt names.

Usage: python oracle.py PATCHES.json [--tests-only]; PATCHES.json maps instance_id to its gold patch. With
--tests-only it writes no fix and deletes the test files the task's tests live in instead (a gamed variant).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    patches = json.loads(Path(sys.argv[1]).read_text())
    prompt = Path(os.environ["FLEET_PROMPT_FILE"]).read_text()
    found = [i for i in patches if f"{i} (sample " in prompt]
    if len(found) != 1:
        print(f"no single task in the prompt: {found}")
        return
    task = patches[found[0]]
    if "--tests-only" in sys.argv:
        for path in sorted({t.split("::", 1)[0] for t in task["FAIL_TO_PASS"]}):
            Path(path).unlink(missing_ok=True)
            print(f"deleted {path}")
        return
    subprocess.run(["git", "apply", "-"], input=task["patch"], text=True, check=True)
    print(f"applied the gold patch of {found[0]}")


if __name__ == "__main__":
    main()
