"""The core end-to-end fixtures (a real CLI, embedded and team mode), shared with these tests."""

from tests.core.conftest import embedded, fleet  # noqa: F401 - pytest finds fixtures by name
