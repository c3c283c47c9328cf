#!/bin/sh
# Counts suite runs: one line per run, in the run's own report folder (writable even inside the sandbox).
# Lives in Fleet's source tree, outside /tmp, so the sandbox's private /tmp does not hide it. $1: python.
python="$1"
shift
echo "$PWD" >> "$FLEET_REPORT_DIR/suite-runs.log"
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 exec "$python" -m pytest -q "$@"
