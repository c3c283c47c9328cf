"""A top-level command group that imports a command's module only when that command runs.

Importing every command module costs SQLAlchemy, pydantic, Celery's wiring and more before `fleet --help` could
print a line; with this group `--help` imports none of them and `fleet tickets` only what listing tickets needs.
"""

from __future__ import annotations

import difflib
import gc
import importlib
from typing import Any

from typer.core import TyperCommand

from fleet.cli.help import ReadableGroup
from fleet.cli.plain import plain_params

# name: (module, attribute, one-line help). The attribute is a Typer of commands (one of which is `name`) or, for a
# group (`repo`, `review`, ...), the group's own Typer. Kept in step with the modules by a test.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "repo": ("fleet.cli.repo", "app", "Register, change, remove and list repositories."),
    "review": ("fleet.cli.review", "app", "Verified diffs waiting for a person."),
    "merge": ("fleet.cli.merge", "app", "The merge queue: approved diffs land only once verified on top."),
    "import": ("fleet.cli.imports", "app", "Turn forge issues into tickets."),
    "submit": ("fleet.cli.tickets", "commands", "Queue one ticket, or every ticket in --file."),
    "tickets": ("fleet.cli.listing", "commands", "List tickets, newest first, a page at a time."),
    "show": (
        "fleet.cli.listing",
        "commands",
        "A ticket with its runs and attempts: status, verdict, diff stat and feedback.",
    ),
    "logs": (
        "fleet.cli.tickets",
        "commands",
        "An attempt's prompt, transcript, model calls and verification output; "
        "while its agent runs, its output so far.",
    ),
    "cancel": (
        "fleet.cli.tickets",
        "commands",
        "Stop a ticket, or with --all --repo R every queued, running or rejected ticket of R.",
    ),
    "retry": (
        "fleet.cli.tickets",
        "commands",
        "Start a failed, errored, cancelled or rejected ticket again, with a fresh attempt budget.",
    ),
    "up": (
        "fleet.cli.workers",
        "commands",
        "Run workers in the foreground (embedded mode: no server needed), showing the tickets' progress.",
    ),
    "worker": (
        "fleet.cli.workers",
        "commands",
        "Run a team-mode worker against FLEET_BROKER_URL and FLEET_DATABASE_URL.",
    ),
    "workers": (
        "fleet.cli.workers",
        "commands",
        "List the workers, on every host, and what each runs now (attempt, ticket, step).",
    ),
    "status": ("fleet.cli.status", "commands", "Tickets by status, attempts in flight, workers and queue depth."),
    "stats": (
        "fleet.cli.status",
        "commands",
        "Per agent and model: tickets tried, verified rate, attempts and cost per verified diff, time to verified.",
    ),
    "migrate": (
        "fleet.cli.status",
        "commands",
        "Bring the database schema to the newest revision (every command also does this on first use).",
    ),
    "demo": (
        "fleet.cli.demo",
        "commands",
        "Make a sample repository with real bugs, queue tickets for scripted agents, and run them.",
    ),
    "cache": ("fleet.cli.env", "app", "The environments setup commands built, kept for reuse."),
    "gc": (
        "fleet.cli.gc",
        "commands",
        "Remove what finished attempts left: their folders and the mirrors' unreachable objects; print what went.",
    ),
    "eval": ("fleet.cli.evals", "app", "Evaluate agents on a task set: pass@k, cost, time, gaming."),
    "tasks": ("fleet.cli.datasets", "tasks_app", "Task sets in the SWE-bench instance shape."),
    "export": (
        "fleet.cli.datasets",
        "commands",
        "Finished attempts as training data: redacted, verdict as reward, no repo whose settings forbid it.",
    ),
    "web": (
        "fleet.cli.web",
        "commands",
        "Serve the web dashboard and the HTTP API (plain HTTP on loopback only; see README, Serving the web app).",
    ),
    "watch": ("fleet.cli.web", "commands", "`fleet status`, live: the same figures, refreshing in place."),
    "token": ("fleet.cli.tokens", "app", "API tokens for the web dashboard and the HTTP API."),
}
GROUPS = {name for name, (_, attribute, _) in COMMANDS.items() if attribute.endswith("app")}


def load(name: str) -> Any:
    """The click command `fleet NAME` runs, built from its module (with the readable help of fleet/cli/help.py)."""
    import typer.main

    from fleet.cli.help import readable

    module, attribute, _ = COMMANDS[name]
    sub = getattr(importlib.import_module(module), attribute)
    wrapper = typer.Typer()
    if name in GROUPS:
        wrapper.add_typer(sub, name=name)
    else:
        wrapper.add_typer(sub)
    readable(wrapper)
    group: Any = typer.main.get_command(wrapper)
    return group.commands[name]


class LazyGroup(ReadableGroup):
    """`fleet`: lists COMMANDS from the table; loads a command's module only to run it or show its own help."""

    _listing = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Loading a command makes objects by the hundred thousand and frees almost none, so the collector's passes
        # over them are wasted, and so is its walk over them at exit: about 25 ms of `fleet tickets`' 125.
        # Collection stays off until the command is loaded; get_command then freezes what loading made (no later
        # pass, the one at exit included, walks it again) and turns collection back on, for the command itself
        # (`fleet up` runs for days). gc.freeze's documentation gives the same pattern for a server that forks.
        # What the command makes is collected as always, at exit too: a database driver's objects are finalized
        # while their modules are still whole.
        gc.disable()
        return super().main(*args, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_params(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """`fleet submti` says "Did you mean 'submit'?" as `fleet repo ad` does: Typer looks for close names only
        among the commands already loaded, and this group loads none before it runs one."""
        import typer.core

        try:
            return super().resolve_command(ctx, args)
        except typer.core._click.exceptions.UsageError as exc:
            matches = difflib.get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:  # `fleet --help`: the name and one line are enough
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][2], short_help=COMMANDS[cmd_name][2])
        command = load(cmd_name)
        gc.freeze()  # what loading made lives as long as the process: no collection need walk it again
        gc.enable()  # main() turned collection off for loading; the command itself may run for days
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
