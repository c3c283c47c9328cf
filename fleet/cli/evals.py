"""`fleet eval run|report|compare|list`: task sets in the SWE-bench shape, run as tickets and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, actor, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator.errors import FleetError
from orchestrator.views import plural

app = typer.Typer(no_args_is_help=True, help="Evaluate agents on a task set: pass@k, cost, time, gaming.")


@app.command("run")
@one_line_errors
def run(
    tasks: Annotated[Path, typer.Argument(help="A JSONL task set (SWE-bench instance fields).")],
    agent: Annotated[
        list[str] | None, typer.Option(help="NAME, NAME@MODEL, or LABEL=COMMAND for the shell agent (repeatable).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, max=100, help="Independent samples per task and agent.")] = 1,
    name: Annotated[str, typer.Option(help="The evaluation's name, for report and compare.")] = "",
    repo: Annotated[str, typer.Option(help="Run every task on this registered repo (default: the task's repo).")] = "",
    attempts: Annotated[int, typer.Option(min=1, max=50, help="Attempts per sample, feedback between them.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Queue one ticket per task x agent x sample, recorded as a named evaluation."""
    from db.specs import SpecError
    from db.taskspec import read_tasks
    from orchestrator.evals import EvalAgent, run_evaluation

    if not name or len(name) > 100:
        raise FleetError("--name is required (at most 100 characters)")
    try:
        task_list = read_tasks(tasks)
    except SpecError as exc:
        raise FleetError(str(exc)) from None
    agents = [EvalAgent.parse(text) for text in agent or []]
    ctx = Context()
    ids = run_evaluation(
        ctx.db,
        ctx.dispatcher,
        ctx.settings,
        task_list,
        agents,
        name=name,
        samples=samples,
        tasks_file=str(tasks),
        cwd=Path.cwd(),
        actor=actor(),
        repo=repo,
        attempts=attempts,
    )
    if as_json:
        return print_json({"name": name, "tickets": ids})
    out.print(f"evaluation {name}: {plural(len(ids), 'ticket')} queued ({plural(len(task_list), 'task')})")


@app.command("report")
@one_line_errors
def report(
    name: Annotated[str, typer.Argument(help="The evaluation's name.")],
    as_json: JsonFlag = False,
    markdown: Annotated[Path | None, typer.Option(help="Also write the report as Markdown to this file.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Also write the per-agent table as CSV to this file.")] = None,
) -> None:
    """pass@1 and pass@k per agent and model, cost and time per solved task, gamed and errors."""
    from db import queries
    from orchestrator.evalfiles import to_csv, to_markdown
    from orchestrator.evalreport import build_report

    ctx = Context()
    with ctx.db.session() as s:
        data = build_report(queries.get_evaluation(s, name))
    if markdown is not None:
        markdown.write_text(to_markdown(data), encoding="utf-8")
    if csv is not None:
        csv.write_text(to_csv(data), encoding="utf-8")
    if as_json:
        return print_json(data)
    out.print(report_table(data))
    counts = data["agreement"]["counts"]
    out.print(
        f"agreement with the SWE-bench harness: agree {counts.get('agree', 0)}, "
        f"Fleet stricter {counts.get('stricter', 0)}, disagree {counts.get('disagree', 0)}"
    )


def report_table(data: dict[str, Any]) -> str:
    from orchestrator.evalfiles import pass_columns

    ks = pass_columns(data)
    header = ["agent", "model", *[f"pass@{k}" for k in ks], "solved", "cost/solved", "s/solved", "gamed", "errors"]
    rows = []
    for row in data["agents"]:
        verdicts = row["verdicts"]
        cells = [
            row["agent"],
            row["model"],
            *[f"{row['pass_at'][k]:.3f}" if k in row["pass_at"] else "-" for k in ks],
            f"{row['solved']}/{row['finished']}" + (f" ({row['pending']} running)" if row["pending"] else ""),
            "-" if row["cost_per_solved_usd"] is None else f"${row['cost_per_solved_usd']:.4f}",
            "-" if row["seconds_per_solved"] is None else f"{row['seconds_per_solved']:.1f}",
            verdicts.get("gamed", 0),
            verdicts.get("error", 0),
        ]
        rows.append(cells)
    return columns(header, rows)


@app.command("compare")
@one_line_errors
def compare(
    before: Annotated[str, typer.Argument(help="The earlier evaluation.")],
    after: Annotated[str, typer.Argument(help="The later evaluation.")],
    as_json: JsonFlag = False,
) -> None:
    """Per agent, which tasks got better or worse between two evaluations."""
    from orchestrator.evals import compare as compare_runs

    data = compare_runs(Context().db, before, after)
    if as_json:
        return print_json(data)
    for row in data["agents"]:
        out.print(f"{row['agent']}: {len(row['better'])} better, {len(row['worse'])} worse, {row['same']} same")
        for word in ("better", "worse"):
            for change in row[word]:
                line = f"  {word}: {change['task']} {change['before']:.0%} -> {change['after']:.0%}"
                out.print(line)


@app.command("list")
@one_line_errors
def list_evaluations(as_json: JsonFlag = False) -> None:
    """The evaluations, newest first."""
    from db import queries

    ctx = Context()
    with ctx.db.session() as s:
        rows = [
            {"name": e.name, "samples": e.samples, "created_at": e.created_at.isoformat(), "by": e.created_by}
            for e in queries.list_evaluations(s)
        ]
    if as_json:
        return print_json(rows)
    cells = [(r["name"], r["samples"], r["created_at"], r["by"]) for r in rows]
    out.print(columns(("name", "samples", "created", "by"), cells))
