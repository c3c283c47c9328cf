"""Real git histories built offline from the vendored projects: released with bugs, then one commit per bug that
fixes it and adds a test for it (as a project's history reads), for `fleet tasks mine`."""

from __future__ import annotations

import shutil
from pathlib import Path

from system.git import git
from tests.feedback.projects import DATA, GITIGNORE

# (file, the fixed text, the buggy text the release has, the test file the fix adds, its test)
Fix = tuple[str, str, str, str, str]
INI = "src/iniconfig/__init__.py"
INI_FIXES: tuple[Fix, ...] = (
    (
        "src/iniconfig/_parse.py",
        "    return c in COMMENTCHARS\n",
        '    return c == "#"\n',
        "testing/test_comments.py",
        'from iniconfig._parse import iscommentline\n\n\ndef test_semicolon():\n    assert iscommentline("; note")\n',
    ),
    (
        INI,
        "return None if lineno is None else lineno + 1",
        "return None if lineno is None else lineno",
        "testing/test_lineof.py",
        "from iniconfig import IniConfig\n\n\ndef test_lineof_counts_from_one():\n"
        '    assert IniConfig("x", data="[s]\\na = 1\\n").lineof("s", "a") == 2\n',
    ),
    (
        INI,
        "            if convert is not None:\n                return convert(value)\n",
        "            if convert is not None:\n                return value\n",
        "testing/test_convert.py",
        "from iniconfig import IniConfig\n\n\ndef test_convert():\n"
        '    assert IniConfig("x", data="[s]\\na = 1\\n").get("s", "a", convert=int) == 1\n',
    ),
    (
        INI,
        "        return arg in self.sections\n",
        "        return arg not in self.sections\n",
        "testing/test_contains.py",
        'from iniconfig import IniConfig\n\n\ndef test_contains():\n    assert "s" in IniConfig("x", data="[s]\\n")\n',
    ),
    (
        INI,
        "        except KeyError:\n            return default\n",
        "        except KeyError:\n            return None\n",
        "testing/test_default.py",
        "from iniconfig import IniConfig\n\n\ndef test_default():\n"
        '    assert IniConfig("x", data="[s]\\n").get("s", "k", default="d") == "d"\n',
    ),
)
SIX_FIXES: tuple[Fix, ...] = (
    (
        "six.py",
        "        return s.encode(encoding, errors)\n    raise TypeError",
        '        return s.encode("latin-1", errors)\n    raise TypeError',
        "test_fix_binary.py",
        "import six\n\n\ndef test_ensure_binary_utf8():\n"
        '    assert six.ensure_binary("\\u20ac") == b"\\xe2\\x82\\xac"\n',
    ),
    (
        "six.py",
        "    elif PY3 and isinstance(s, binary_type):\n        return s.decode(encoding, errors)\n",
        '    elif PY3 and isinstance(s, binary_type):\n        return s.decode("ascii", "ignore")\n',
        "test_fix_str.py",
        'import six\n\n\ndef test_ensure_str_decodes():\n    assert six.ensure_str(b"\\xe2\\x82\\xac") == "\\u20ac"\n',
    ),
    (
        "six.py",
        "    elif isinstance(s, text_type):\n        return s\n    else:",
        "    elif isinstance(s, text_type):\n        return s.upper()\n    else:",
        "test_fix_text.py",
        'import six\n\n\ndef test_ensure_text_keeps_case():\n    assert six.ensure_text("abc") == "abc"\n',
    ),
    (
        "six.py",
        '    int2byte = struct.Struct(">B").pack\n',
        '    int2byte = struct.Struct(">H").pack\n',
        "test_fix_int2byte.py",
        'import six\n\n\ndef test_int2byte():\n    assert six.int2byte(65) == b"A"\n',
    ),
    (
        "six.py",
        '    def b(s):\n        return s.encode("latin-1")\n',
        '    def b(s):\n        return s.encode("utf-8")\n',
        "test_fix_b.py",
        'import six\n\n\ndef test_b_is_latin1():\n    assert six.b("\\xe9") == b"\\xe9"\n',
    ),
)
PROJECTS = {"iniconfig": INI_FIXES, "six": SIX_FIXES}


def _commit(dest: Path, message: str, day: int) -> None:
    date = f"2026-11-{day:02d}T12:00:00+00:00"
    git("add", "-A", cwd=dest)
    git("commit", "--quiet", "-m", message, cwd=dest, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})


def replay(dest: Path, project: str) -> list[str]:
    """The project released with every bug of PROJECTS[project], then one fix-with-a-test commit per bug."""
    shutil.copytree(DATA / project, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    (dest / ".gitignore").write_text(GITIGNORE)
    fixes = PROJECTS[project]
    for path, fixed, buggy, _, _ in fixes:
        _replace(dest / path, fixed, buggy)
    git("init", "--quiet", "--initial-branch=main", cwd=dest)
    _commit(dest, f"{project} as released", 1)
    shas = []
    for day, (path, fixed, buggy, test_path, test) in enumerate(fixes, start=2):
        _replace(dest / path, buggy, fixed)
        (dest / test_path).write_text(test)
        _commit(
            dest, f"Fix {test_path.rsplit('/', 1)[-1][:-3].replace('_', ' ')}\n\nA regression test comes with it.", day
        )
        shas.append(git("rev-parse", "HEAD", cwd=dest).strip())
    return shas


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"the vendored {path.name} changed: {old!r} is not there exactly once")
    path.write_text(text.replace(old, new))
