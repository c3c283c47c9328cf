"""Errors the CLI and the API show to people as one line."""


class FleetError(Exception):
    """A bad input or an impossible request; the message is the whole explanation."""


class Unrunnable(FleetError):
    """A ticket whose agent can only fail: an unknown agent, the shell agent without a command, a missing command."""


class InvalidInput(FleetError):
    """A value no request may carry, whatever the state (the API answers 422, as for a field out of its bounds)."""
