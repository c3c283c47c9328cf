"""The pure parts: the pass@k estimator, the task spec's one-line errors, the mutations, the schema check and
the agreement with the SWE-bench harness's judgement."""

from __future__ import annotations

import ast
import json
from itertools import combinations
from pathlib import Path

import pytest

from db.models import EvalEntry
from db.specs import SpecError
from db.taskspec import TaskSpec, read_tasks
from orchestrator.evalreport import STRICTER_BROKEN, Outcome, agreement, cause, ks_for, pass_at_k
from orchestrator.exportschema import problems
from orchestrator.mutations import candidates

TASK = {
    "instance_id": "calc__add",
    "repo": "owner/calc",
    "base_commit": "HEAD",
    "problem_statement": "add() subtracts.",
    "FAIL_TO_PASS": ["tests/test_calc.py::test_add"],
}


@pytest.mark.parametrize(("n", "c"), [(n, c) for n in range(1, 7) for c in range(n + 1)])
def test_pass_at_k_is_the_chance_that_k_draws_hold_a_correct_sample(n: int, c: int) -> None:
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        draws = list(combinations(samples, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))


def test_ks_and_causes() -> None:
    assert ks_for(4) == [1, 2, 4] and ks_for(1) == [1] and ks_for(10) == [1, 2, 5, 10]
    assert cause("the diff changed protected test files: tests/a.py\nmore") == "the diff changed protected test files"
    assert cause("") == "unknown"
    assert cause("the baseline run failed: setup failed: exit 2") == "the baseline run failed: setup failed"


def write(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_task_sets_parse_swe_bench_rows_and_refuse_bad_ones_in_one_line(tmp_path: Path) -> None:
    row = TASK | {"FAIL_TO_PASS": json.dumps(TASK["FAIL_TO_PASS"]), "PASS_TO_PASS": "[]"}
    [task] = read_tasks(write(tmp_path / "ok.jsonl", row, ""))
    assert task.FAIL_TO_PASS == ["tests/test_calc.py::test_add"] and task.repo_name == "calc"
    assert TaskSpec.model_validate_json(task.line()) == task
    cases = {
        "missing.jsonl": ({k: v for k, v in TASK.items() if k != "base_commit"}, ":1: base_commit: is required"),
        "extra.jsonl": (TASK | {"oops": 1}, ":1: oops: unknown field"),
        "id.jsonl": (TASK | {"instance_id": "../x"}, ":1: instance_id: is not in the expected form (got '../x')"),
        "list.jsonl": (TASK | {"FAIL_TO_PASS": "not json"}, ":1: FAIL_TO_PASS: must be a list of test ids"),
        "json.jsonl": ("{nope", ":1: not JSON: Expecting property name enclosed in double quotes"),
    }
    for name, (row, error) in cases.items():
        with pytest.raises(SpecError) as caught:
            read_tasks(write(tmp_path / name, row))
        assert str(caught.value).startswith(f"{tmp_path / name}{error}"), str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(SpecError, match="instance_id 'calc__add' appears twice"):
        read_tasks(write(tmp_path / "twice.jsonl", TASK, TASK))
    with pytest.raises(SpecError, match="holds no tasks"):
        read_tasks(write(tmp_path / "empty.jsonl", ""))


SOURCE = """def clamp(x, low, high):
    if x < low:
        return low
    return min(x + 0, high) if flag and True else "é" == x
"""


def test_mutations_are_deterministic_by_seed_and_each_changes_one_expression(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(SOURCE)
    first, again, other = (candidates(tmp_path, ["m.py"], seed) for seed in (1, 1, 2))
    assert first == again and sorted(first, key=str) == sorted(other, key=str) and first != other
    assert {m.old for m in first} >= {"x < low", "x + 0", "flag and True", "True", '"é" == x'}
    for mutation in first:
        mutated = mutation.apply(SOURCE.encode()).decode()
        ast.parse(mutated)
        assert mutated != SOURCE and mutation.function == "clamp"


def test_schema_check_names_the_field() -> None:
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert problems(good, "sft") == []
    assert problems({"messages": [{"role": "robot", "content": "a"}]}, "sft") != []
    assert any("messages" in p for p in problems({}, "sft"))


def entry(f2p: list[str], p2p: list[str]) -> EvalEntry:
    return EvalEntry(instance_id="t", agent="a", fail_to_pass=f2p, pass_to_pass=p2p)


def test_agreement_with_the_reference_harness() -> None:
    task = entry(["t::a"], ["t::keep"])
    assert agreement(task, Outcome(True, "passed", fail_to_pass=["t::a"])) == ("agree", "")
    assert agreement(task, Outcome(True, "failed", broken=["t::keep"], fail_to_pass=["t::a"])) == ("agree", "")
    assert agreement(task, Outcome(True, "failed")) == ("agree", "")
    stricter = agreement(task, Outcome(True, "failed", fail_to_pass=["t::a"], broken=["t::other"]))
    assert stricter == ("stricter", f"{STRICTER_BROKEN}: t::other")
    assert agreement(task, Outcome(True, "gamed"))[0] == "stricter"
    assert agreement(task, Outcome(True, "error"))[0] == "excluded"
