"""`fleet up` and `fleet worker`: the workers, in the foreground; `fleet workers`: who runs what."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, one_line_errors, out, print_json
from fleet.cli.context import Context
from fleet.cli.progress import banner, handed_back_line, reporting, worker_log
from orchestrator.errors import FleetError
from orchestrator.passes import ForgePasses
from system.settings import Settings
from workers.constants import INTERRUPTED

commands = typer.Typer()
F = TypeVar("F", bound=Callable[..., Any])
STOPPED_EARLY = "stopped before the worker started: no attempt ran; the waiting ones stay in line"


def interruptible(fn: F) -> F:
    """A Ctrl-C before the worker takes Ctrl-C over (while Fleet loads, or the database is brought up to date):
    one line and exit code 130, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            out.print(STOPPED_EARLY)
            raise typer.Exit(INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Celery's own log here, not in the log file.")]


def log_options(settings: Settings, verbose: bool) -> dict[str, Any]:
    """Celery's log: to stderr with -v, else to a file under the home, named in the banner."""
    return {"loglevel": "INFO"} if verbose else {"logfile": str(worker_log(settings))}


MAX_SLOTS = 1024


def check_slots(concurrency: int) -> None:
    if not 1 <= concurrency <= MAX_SLOTS:
        raise FleetError(f"--concurrency must be between 1 and {MAX_SLOTS} (got {concurrency})")


def start_looking_through_toolchains() -> None:
    """Before the worker's imports (most of a second): the walks of the toolchains its sandboxes show run beside
    them, in processes of their own, so the first wave of agents does not wait for them."""
    from system.sandbox import look_through_toolchains

    look_through_toolchains()


def forge_passes(ctx: Context) -> list[ForgePasses]:
    """The control plane's passes the reconciler runs: notifications, PR feedback, issue import."""
    return [ForgePasses(ctx.db, ctx.settings)]


@commands.command()
@one_line_errors
@interruptible
def up(
    concurrency: Annotated[
        int, typer.Option(help="Agent slots; verifications run beside them, FLEET_VERIFY_CONCURRENCY at once.")
    ] = 4,
    until_idle: Annotated[bool, typer.Option(help="Exit when no work is left.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run workers in the foreground (embedded mode: no server needed), showing the tickets' progress."""
    check_slots(concurrency)
    start_looking_through_toolchains()
    from workers.serve import serve

    ctx = Context()
    logging = log_options(ctx.settings, verbose)
    for line in banner("up", ctx.settings, concurrency, until_idle, logging.get("logfile")):
        out.print(line)
    with reporting(ctx.db) as reporter:
        passes = forge_passes(ctx)
        served = serve(
            ctx.settings, ctx.db, concurrency, until_idle=until_idle, passes=passes, announce=reporter.say, **logging
        )
        reporter.handed_back = served.handed_back
    for line in served.left_waiting:
        out.print(line)
    if served.gave_up:
        raise FleetError(served.gave_up)
    raise typer.Exit(served.exit_code)


@commands.command()
@one_line_errors
@interruptible
def worker(
    concurrency: Annotated[
        int, typer.Option(help="Agent slots in this worker process; verifications run beside them.")
    ] = 8,
    queue: Annotated[
        list[str] | None, typer.Option(metavar="QUEUE", help="Queues to consume: agents, verify (default both).")
    ] = None,
    drain: Annotated[bool, typer.Option(help="Exit once no attempt is waiting or running.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run a team-mode worker against FLEET_BROKER_URL and FLEET_DATABASE_URL.

    SIGTERM or Ctrl-C stops it gently: no new work, running attempts get FLEET_SHUTDOWN_GRACE_SECONDS to finish,
    then go back in line for other workers (no verdict); a second one sends them back at once."""
    check_slots(concurrency)
    start_looking_through_toolchains()
    from workers.constants import AGENT_QUEUE, QUEUES, VERIFY_QUEUE
    from workers.serve import serve

    names = {"agents": AGENT_QUEUE, "verify": VERIFY_QUEUE}
    queue = queue or []
    unknown = [q for q in queue if q not in names]
    if unknown:
        raise FleetError(f"unknown queue {unknown[0]!r}; one of: agents, verify")
    ctx = Context()
    logging = log_options(ctx.settings, verbose)
    for line in banner("worker", ctx.settings, concurrency, drain, logging.get("logfile")):
        out.print(line)
    queues = [names[q] for q in queue] or list(QUEUES)
    passes = forge_passes(ctx)
    served = serve(
        ctx.settings, ctx.db, concurrency, queues, until_idle=drain, passes=passes, announce=out.print, **logging
    )
    if served.handed_back:
        out.print(handed_back_line(served.handed_back, "the next free worker takes over"))
    for line in served.left_waiting:
        out.print(line)
    if served.gave_up:
        raise FleetError(served.gave_up)
    raise typer.Exit(served.exit_code)


@commands.command("workers")
@one_line_errors
def workers_(
    all_: Annotated[bool, typer.Option("--all", help="Also list the workers that stopped.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the workers, on every host, and what each runs now (attempt, ticket, step)."""
    from orchestrator.fleetstatus import worker_list

    rows = worker_list(Context().db, include_stopped=all_)
    if as_json:
        return print_json(rows)
    cells = []
    for w in rows:
        state = "stopped" if w["stopped_at"] else "stale" if w["stale"] else "live"
        running = ", ".join(f"ticket {r['ticket']} attempt {r['number']} ({r['status']})" for r in w["running"])
        cells.append((w["id"], w["hostname"], w["pid"], state, f"{w['busy']}/{w['slots']}", w["queues"],
                      w["heartbeat_at"], running or "-"))  # fmt: skip
    out.print(columns(("worker", "host", "pid", "state", "slots busy", "queues", "heartbeat", "running"), cells))
