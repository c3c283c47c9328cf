"""`fleet tasks mine` (task sets from a repository's history) and `fleet export` (training data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fleet.cli.console import JsonFlag, err, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator.errors import FleetError
from orchestrator.views import plural

tasks_app = typer.Typer(no_args_is_help=True, help="Task sets in the SWE-bench instance shape.")
commands = typer.Typer()


@tasks_app.command("mine")
@one_line_errors
def mine(
    repo: Annotated[str, typer.Option(help="The registered repo whose history to mine.")],
    out_file: Annotated[Path, typer.Option("--out", help="The JSONL task set to write.")],
    since: Annotated[str, typer.Option(help="How far back: 90d, 12h, 2w, or a date git understands.")] = "90d",
    seed: Annotated[int, typer.Option(help="Fixes the order the injected bugs are tried in.")] = 0,
    mutations: Annotated[int, typer.Option(min=0, max=1000, help="Up to this many tasks from injected bugs.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Commits that fix a bug with a test (and injected bugs), each kept once its gold patch verifies."""
    from db import queries
    from db.specs import RepoSettings
    from db.taskspec import write_tasks
    from orchestrator.mining import MineOptions
    from orchestrator.mining import mine as mine_tasks

    ctx = Context()
    with ctx.db.session() as s:
        found = queries.get_repo(s, repo)
        settings = RepoSettings.from_stored(found.settings)
        options = MineOptions(
            source=Path(found.source),
            repo=found.name,
            test_cmd=found.test_cmd,
            setup_cmd=found.setup_cmd or None,
            since=since,
            seed=seed,
            mutations=mutations,
            timeout=settings.test_timeout or ctx.settings.test_timeout_seconds,
        )
    result = mine_tasks(options, progress=lambda line: err.print(line))
    write_tasks(out_file, result.tasks)
    if as_json:
        return print_json({"tasks": len(result.tasks), "out": str(out_file), "skipped": result.skipped})
    for line in result.skipped:
        err.print(f"skipped {line}")
    out.print(f"{plural(len(result.tasks), 'task')} written to {out_file}")


@commands.command("export")
@one_line_errors
def export(
    out_file: Annotated[Path, typer.Option("--out", help="The JSONL file to write (Parquet next to it with pyarrow).")],
    fmt: Annotated[str, typer.Option("--format", help="trajectories, sft or preference.")] = "trajectories",
    since: Annotated[str, typer.Option(help="Attempts finished in this window: 7d, 12h, 2w.")] = "7d",
    repo: Annotated[list[str] | None, typer.Option(help="Only this repo (repeatable).")] = None,
    exclude_repo: Annotated[list[str] | None, typer.Option(help="Never this repo (repeatable).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Finished attempts as training data: redacted, verdict as reward, no repo whose settings forbid it."""
    from orchestrator.export import Filters, export_records, window
    from orchestrator.exportschema import FORMATS
    from workers.secrets import redact, secret_values

    if fmt not in FORMATS:
        raise FleetError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    values = secret_values()
    filters = Filters(tuple(repo or ()), tuple(exclude_repo or ()))
    records = export_records(Context().db, fmt, window(since), filters, lambda text: redact(text, values))
    out_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    parquet = write_parquet(out_file, records)
    if as_json:
        return print_json({"records": len(records), "format": fmt, "out": str(out_file), "parquet": str(parquet or "")})
    also = f" and {parquet}" if parquet else ""
    out.print(f"{plural(len(records), f'{fmt} record')} written to {out_file}{also}")


def write_parquet(jsonl: Path, records: list[dict[str, object]]) -> Path | None:
    """The records as Parquet next to the JSONL file, when pyarrow is installed (the `parquet` extra)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    path = jsonl.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(records), path)
    return path
