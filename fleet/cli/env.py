"""`fleet cache list|clear`: the environments setup commands built."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from fleet.cli.cells import columns

if TYPE_CHECKING:
    from verification.envcache import EnvCache

from fleet.cli.console import JsonFlag, one_line_errors, out, print_json

app = typer.Typer(no_args_is_help=True, help="The environments setup commands built, kept for reuse.")


def _env_cache() -> EnvCache:
    from fleet.cli.settings import load_settings
    from verification.envcache import EnvCache

    settings = load_settings()
    return EnvCache(settings.env_cache_dir, settings.env_cache_bytes)


@app.command("list")
@one_line_errors
def cache_list(as_json: JsonFlag = False) -> None:
    """List cached environments, most recently used first."""
    entries = [e.view() for e in reversed(_env_cache().entries())]
    if as_json:
        return print_json(entries)
    rows = []
    for e in entries:
        paths = ", ".join(e["paths"][:3]) + (" ..." if len(e["paths"]) > 3 else "")
        rows.append((e["key"][:12], e["scope"], e["setup_cmd"], paths, f"{e['bytes'] / 2**20:.1f}", e["last_used"]))
    out.print(columns(("key", "scope", "setup command", "paths", "MB", "last used"), rows))


@app.command("clear")
@one_line_errors
def cache_clear(as_json: JsonFlag = False) -> None:
    """Delete every cached environment (for example after upgrading a toolchain); the next setups rebuild them."""
    entries, freed = _env_cache().clear()
    if as_json:
        return print_json({"deleted": entries, "freed_bytes": freed})
    out.print(f"deleted {entries} cached environment{'s' if entries != 1 else ''} ({freed / 2**20:.1f} MB)")
