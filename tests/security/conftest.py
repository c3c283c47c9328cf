"""The escape suite uses the Fleet fixtures of tests/core."""

from tests.core.conftest import both_modes, embedded, fleet, team  # noqa: F401
