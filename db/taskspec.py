"""A task in the SWE-bench instance shape: one JSONL line of a task set, typed, with one-line errors.

The fields and their meaning are SWE-bench's (swebench/harness): FAIL_TO_PASS are the tests the fix must make
pass, PASS_TO_PASS the tests that must keep passing, test_patch the tests added by the fix, applied only when
verifying (never shown to the agent). Both test lists may be given as JSON text, as SWE-bench's datasets do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from db.specs import Spec, SpecError, parse
from db.spectypes import MAX_BODY, Arg, Command

INSTANCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$"
MAX_PATCH = 5_000_000


class TaskSpec(Spec):
    """One task: where to start, what is asked, and which tests decide."""

    instance_id: str = Field(pattern=INSTANCE_ID, description="A unique name for the task.")
    repo: str = Field(min_length=1, max_length=200, description="The registered repo (owner/name: its last part).")
    base_commit: str = Field(min_length=1, max_length=200, description="The commit the agent starts from.")
    problem_statement: str = Field(min_length=1, max_length=MAX_BODY, description="What to fix, as the agent reads it.")
    FAIL_TO_PASS: list[Arg] = Field(min_length=1, max_length=200, description="Tests the fix must make pass.")
    PASS_TO_PASS: list[Arg] = Field(
        default_factory=list, max_length=20_000, description="Tests that must keep passing."
    )
    test_patch: str = Field(default="", max_length=MAX_PATCH, description="The tests, applied only when verifying.")
    patch: str = Field(default="", max_length=MAX_PATCH, description="The gold patch (never shown to agents).")
    environment_setup_commit: str = Field(default="", max_length=200, description="Recorded; Fleet sets up at base.")
    setup_cmd: Command = Field(default="", description="Must equal the repository's setup command when given.")
    hints_text: str = Field(default="", max_length=MAX_BODY, description="Recorded, never shown (as in SWE-bench).")
    created_at: str = Field(default="", max_length=100, description="When the task was made.")
    version: str = Field(default="", max_length=100, description="The project's version (SWE-bench's field).")
    source: str = Field(default="", max_length=100, description="history or mutation (fleet tasks mine).")

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """SWE-bench's datasets store the test lists as JSON text."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("must be a list of test ids (or its JSON text)") from None
        return value

    @property
    def repo_name(self) -> str:
        return self.repo.rsplit("/", 1)[-1]

    def line(self) -> str:
        """The task as one JSONL line (empty optional fields left out)."""
        return json.dumps(self.model_dump(exclude_defaults=True), sort_keys=False)


def read_tasks(path: Path) -> list[TaskSpec]:
    """Every task of a JSONL file; SpecError names the line and the field of the first bad one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecError(f"cannot read tasks from {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"cannot read tasks from {path}: not UTF-8 text") from None
    tasks = list(_parsed(path, lines))
    if not tasks:
        raise SpecError(f"{path} holds no tasks")
    seen: set[str] = set()
    for number, task in enumerate(tasks, 1):
        if task.instance_id in seen:
            raise SpecError(f"{path}: task {number}: instance_id {task.instance_id!r} appears twice")
        seen.add(task.instance_id)
    return tasks


def _parsed(path: Path, lines: list[str]) -> Iterator[TaskSpec]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}:{number}: a task must be a JSON object")
        try:
            yield parse(TaskSpec, data)
        except SpecError as exc:
            raise SpecError(f"{path}:{number}: {exc}") from None


def write_tasks(path: Path, tasks: list[TaskSpec]) -> None:
    path.write_text("".join(task.line() + "\n" for task in tasks), encoding="utf-8")
