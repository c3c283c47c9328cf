"""Per-test outcomes read from JUnit XML, keyed by pytest-style node ids."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from xml.parsers import expat

from system.files import read_regular

MAX_REPORT_BYTES = 64_000_000


class ReportError(Exception):
    """A test report exists but cannot be read as JUnit XML."""


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"


# When one id appears twice (a failed call plus a teardown error, or two report files), the worst wins.
_SEVERITY = {Outcome.PASSED: 0, Outcome.XFAILED: 1, Outcome.SKIPPED: 2, Outcome.FAILED: 3, Outcome.ERROR: 4}


@dataclass(frozen=True)
class TestResult:
    """One test's outcome, with the failure message and traceback text when there is one."""

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    outcome: Outcome
    message: str = ""
    details: str = ""

    @property
    def ok(self) -> bool:
        """True only for a plain pass (xfail and skip are not passes)."""
        return self.outcome is Outcome.PASSED

    @property
    def bad(self) -> bool:
        """True for a failure or an error."""
        return self.outcome in (Outcome.FAILED, Outcome.ERROR)


def parse_junit(path: Path, root: Path | None = None) -> dict[str, TestResult]:
    """Parse one JUnit XML file, or every *.xml file directly inside a directory (MAX_REPORT_BYTES in all); raise
    ReportError."""
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    results: dict[str, TestResult] = {}
    left = MAX_REPORT_BYTES
    for file in files:
        data = _report_bytes(file, left)
        left -= len(data)
        for result in _parse_file(file.name, data, root):
            _merge(results, result)
    return results


def _merge(results: dict[str, TestResult], result: TestResult) -> None:
    old = results.get(result.test_id)
    if old is None or _SEVERITY[result.outcome] > _SEVERITY[old.outcome]:
        results[result.test_id] = result


def _report_bytes(file: Path, limit: int) -> bytes:
    data = read_regular(file, limit + 1)  # the run could write here: never a link, fifo or device
    if data is None:
        raise ReportError(f"{file.name}: not a regular file (a link, fifo or device the test run left)")
    if len(data) > limit:
        raise ReportError(f"{file.name}: the reports are larger than {MAX_REPORT_BYTES:,} bytes in all")
    return data


def _parse_file(name: str, data: bytes, root: Path | None) -> list[TestResult]:
    try:
        tree = _parse_xml(data)
    except ET.ParseError as exc:
        raise ReportError(f"{name}: malformed XML: {exc}") from exc
    except _Refused as exc:
        raise ReportError(f"{name}: DOCTYPE or ENTITY declarations are refused") from exc
    if tree.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"{name}: not a JUnit report (root element <{tree.tag}>)")
    return [_case(case, root) for case in tree.iter("testcase")]


class _Refused(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise _Refused


def _parse_xml(data: bytes) -> ET.Element:
    """Parse with expat, refusing any DTD: entity expansion (billion laughs) needs one, and no report does."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ET.ParseError(str(exc)) from exc
    return builder.close()


def _case(case: ET.Element, root: Path | None) -> TestResult:
    test_id = node_id(case.get("file"), case.get("classname", ""), case.get("name", ""), root)
    for child in case:
        outcome = _outcome(child)
        if outcome is not None:
            message = child.get("message") or ""
            return TestResult(test_id, outcome, message, (child.text or "").strip())
    return TestResult(test_id, Outcome.PASSED)


def _outcome(child: ET.Element) -> Outcome | None:
    if child.tag == "failure":
        return Outcome.FAILED
    if child.tag == "error":
        return Outcome.ERROR
    if child.tag == "skipped":
        return Outcome.XFAILED if child.get("type") == "pytest.xfail" else Outcome.SKIPPED
    return None


def node_id(file: str | None, classname: str, name: str, root: Path | None = None) -> str:
    """The pytest node id of a testcase (`tests/test_x.py::TestK::test_y[p]`), or `classname::name`."""
    if not file:
        return f"{classname}::{name}" if classname else name
    file = _relative(file, root)
    if not classname:  # pytest's collection error: name is the dotted module, the file is the node
        return file
    module = file.removesuffix(".py").replace("/", ".")
    elsewhere = file.endswith(".py") and classname != module and not classname.startswith(module + ".")
    if elsewhere and root is not None:
        # The file is where the test's function is defined (a base class's module, a helper the test file imports);
        # the classname names the test file that collected it, as pytest's node id does.
        file = _collecting_file(classname, root) or file
        module = file.removesuffix(".py").replace("/", ".")
    inner = classname[len(module) + 1 :].split(".") if classname.startswith(module + ".") else []
    return "::".join([file, *[part for part in inner if part], name])


def _collecting_file(classname: str, root: Path) -> str | None:
    """The longest dotted prefix of classname that is a regular Python file under root (never through a link)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        try:
            if stat.S_ISREG(os.lstat(root / candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def _relative(file: str, root: Path | None) -> str:
    file = file.replace("\\", "/")
    if root is not None and file.startswith("/"):
        try:
            return Path(file).relative_to(root).as_posix()
        except ValueError:
            return file
    return file.removeprefix("./")
