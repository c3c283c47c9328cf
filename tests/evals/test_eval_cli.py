"""Bad input to the eval, tasks and export commands: one `error:` line each."""

from __future__ import annotations

from tests.conftest import Fleet


def test_bad_task_sets_are_one_error_line(embedded: Fleet) -> None:
    embedded.sample_repo()
    bad = embedded.tmp / "bad.jsonl"
    bad.write_text('{"instance_id": "x", "repo": "calc", "base_commit": "HEAD", "problem_statement": "p"}\n')
    result = embedded.run("eval", "run", str(bad), "--agent", "shell", "--name", "n", check=False)
    assert result.returncode == 1 and result.stderr.strip() == f"error: {bad}:1: FAIL_TO_PASS: is required"
    bad.write_text(
        '{"instance_id": "x", "repo": "nope", "base_commit": "HEAD", "problem_statement": "p", '
        '"FAIL_TO_PASS": "[\\"t.py::t\\"]"}\n'
    )
    result = embedded.run("eval", "run", str(bad), "--agent", "a=true", "--name", "n", check=False)
    assert result.stderr.strip() == "error: task x: no registered repo 'nope' (fleet repo add it)"
    bad.write_text(bad.read_text().replace('"nope"', '"calc"').replace('"HEAD"', '"no-such-ref"'))
    result = embedded.run("eval", "run", str(bad), "--agent", "a=true", "--name", "n", check=False)
    assert result.stderr.strip().startswith("error: task x: base ref 'no-such-ref' does not exist in repo 'calc'")
    result = embedded.run("eval", "report", "nope", check=False)
    assert result.stderr.strip() == "error: no evaluation named 'nope' (fleet eval list shows them)"


def test_bad_export_options_are_one_line(embedded: Fleet) -> None:
    result = embedded.run("export", "--format", "rlhf", "--out", str(embedded.tmp / "x.jsonl"), check=False)
    assert result.returncode == 1 and result.stderr.strip().startswith("error: --format 'rlhf': must be one of")
    result = embedded.run("export", "--since", "a week", "--out", str(embedded.tmp / "x.jsonl"), check=False)
    assert result.stderr.strip() == "error: --since 'a week': give a number and h, d or w (7d, 12h, 2w)"


def test_mining_an_unknown_repo_is_one_line(embedded: Fleet) -> None:
    result = embedded.run("tasks", "mine", "--repo", "nope", "--out", str(embedded.tmp / "t.jsonl"), check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (embedded.tmp / "t.jsonl").exists()
