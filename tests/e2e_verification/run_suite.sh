#!/bin/sh
# Marks each suite run in the run's output, which Fleet keeps in the database (the baseline's and each
# verification's). Lives in Fleet's source tree, outside the repository under test. $1: python.
python="$1"
shift
echo "FLEET-SUITE-RUN"
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 exec "$python" -m pytest -q "$@"
