"""A task's hidden test patch is written once under FLEET_HOME, whoever asks for it at the same moment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workers.pipeline.baselines import hidden_patch_file

PATCH = "diff --git a/tests/test_x.py b/tests/test_x.py\n+def test_x():\n+    assert True\n"


def test_threads_writing_the_same_patch_at_once_all_get_the_file(tmp_path: Path) -> None:
    # The baseline and the verification of one ticket run on a worker's verification pool side by side.
    for round_ in range(20):  # each round a new home, so every round races on a file that does not exist yet
        home = tmp_path / str(round_)
        with ThreadPoolExecutor(max_workers=16) as pool:
            paths = list(pool.map(hidden_patch_file, [home] * 32, [PATCH] * 32))
        assert len(set(paths)) == 1
        assert paths[0].read_text(encoding="utf-8") == PATCH
        assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]  # no partial file left behind
