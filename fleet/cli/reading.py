"""The reading commands' way into the database (`fleet tickets`, `show`, `status`): no SQLAlchemy, pydantic or Alembic.

Like every command they check the schema first, with the same connection: a schema newer than this code is refused
in the same one line; no database yet, or an older schema, takes the full path once (the Context creates or
migrates it) and the read goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from db.reads import Reader, reading
from db.revisions import HEAD, SchemaTooNew, refuse_newer
from orchestrator.errors import FleetError
from system.places import Place


def is_current(reader: Reader) -> bool:
    """True when the schema is this code's; raises FleetError when a newer Fleet wrote it."""
    found = reader.revision()
    if found == HEAD:
        return True
    try:
        refuse_newer(found)
    except SchemaTooNew as exc:
        raise FleetError(str(exc)) from None
    return False


@contextmanager
def database(place: Place) -> Iterator[Reader]:
    """A Reader on place's database, its schema checked (and brought up when older) as every command does."""
    with reading(place.db_url) as reader:
        if reader is not None and is_current(reader):
            yield reader
            return
    from fleet.cli.context import Context

    Context()  # creates the database or migrates it, as any other command would
    with reading(place.db_url) as reader:
        if reader is None:
            raise FleetError(f"no database at {place.db_url}")
        yield reader
