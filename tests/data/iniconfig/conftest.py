"""Added by Fleet (not upstream): run the suite against src/ of this checkout.

pytest itself imports the installed iniconfig before any test, so putting src/ on sys.path is not enough:
the cached modules are dropped too, and the tests import this checkout's copy. Committed at the base commit
of the fixture repository, so verification trusts it (it is a protected conftest.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
for _name in [m for m in sys.modules if m == "iniconfig" or m.startswith("iniconfig.")]:
    del sys.modules[_name]
