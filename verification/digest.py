"""The short feedback an agent gets after a failed verification: what failed and why, never a hidden test."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from db.lifecycle import Verdict
from verification.awareness import source_text
from verification.judge import Judgement, nearest
from verification.runner import TestRun

TRACE_LINES = 12
MESSAGE_LINES = 5
MIN_BLOCK_BYTES = 200
OUTPUT_TAIL_LINES = 30
GAMED_NEXT = (
    "Next: fix the code under test. Test files and test settings are restored to the base before the run, and a "
    "run that is cut short or whose report is changed never passes; you may add new tests when the repository "
    "allows it, never edit, skip or deselect the existing ones."
)
ENVIRONMENT_NEXT = (
    "This is a failure of the test environment, not of your change; nothing in your diff needs to change for it."
)
AGENT_RUN_NEXT = (
    "Nothing was tested: the agent's run ended without a diff to verify. A run stopped at its time limit keeps "
    "none of its changes, so make the fix in small steps and stop once the targets pass."
)

NOT_AT_BASE = "no such test at the base commit; write it if the ticket asks for a new test"
WITHHELD = "fails, but its output names or quotes a hidden test, so it is withheld"
MIN_SECRET_CHARS = 16  # a hidden test's line this long tells it apart; a shorter one (`assert x`) is anyone's


def feedback_digest(
    candidate: TestRun,
    judgement: Judgement,
    limit_bytes: int = 4000,
    hidden: Collection[str] = (),
    secrets: Collection[str] = (),
) -> str:
    """Verdict reasons, failing visible tests with their assertion and trimmed traceback, within limit_bytes. The code
    under test runs beside the hidden tests and can read them: a visible test's block that names one or quotes one of
    its lines (secrets: hidden_lines) is withheld."""
    failing = list(dict.fromkeys(judgement.broken + judgement.still_failing))  # regressions first
    visible = [t for t in failing if not is_hidden(t, hidden)]
    head = _header(judgement, hidden, len(failing) - len(visible), shown=set(visible))
    head += _next_step(judgement, hidden)
    blocks = [_unless_quoting(_block(candidate, t), t, hidden, secrets) for t in visible]
    if not blocks and not hidden and candidate.output.strip():
        blocks = [_output_tail(candidate.output)]
    return _fit(head, blocks, limit_bytes)


def targets_digest(
    reason: str, baseline: TestRun, targets: Collection[str], limit_bytes: int = 4000, hidden: Collection[str] = ()
) -> str:
    """Feedback for a diff no test ran on (empty, refused): why, then each target and how it fails at the base."""
    visible = [t for t in targets if not is_hidden(t, hidden)]
    head = f"Verification: failed\n- {reason}\n"
    if visible:
        head += "Next: make these tests pass; this is how each fails at the base commit:\n"
    return _fit(head, [_block(baseline, t, NOT_AT_BASE) for t in visible], limit_bytes)


def environment_feedback(reason: str) -> str:
    """The feedback for an `error` verdict: what broke, and that it is not the agent's doing."""
    return f"Verification: error\n- {reason}\n{ENVIRONMENT_NEXT}\n"


def agent_run_feedback(reason: str) -> str:
    """The feedback for an agent whose run itself ended in an error (a time limit, an exit with nothing changed)."""
    return f"Verification: error\n- {reason}\n{AGENT_RUN_NEXT}\n"


def _next_step(judgement: Judgement, hidden: Collection[str]) -> str:
    if judgement.verdict is Verdict.GAMED:
        return GAMED_NEXT + "\n"
    if judgement.verdict is Verdict.ERROR:
        return ENVIRONMENT_NEXT + "\n"
    if judgement.verdict is not Verdict.FAILED:
        return ""
    broken = [t for t in judgement.broken if not is_hidden(t, hidden)]
    still = [t for t in judgement.still_failing if not is_hidden(t, hidden)]
    steps = [f"first the regressions (passed at the base, fail now): {', '.join(broken[:10])}"] if broken else []
    steps += [f"{'then ' if broken else ''}the tests still failing: {', '.join(still[:10])}"] if still else []
    return f"Next: fix {'; '.join(steps)}.\n" if steps else ""


def is_hidden(test_id: str, hidden: Collection[str]) -> bool:
    """True when test_id, or the file it lives in, is one of the hidden tests."""
    return test_id in hidden or test_id.split("::", 1)[0] in hidden


def _header(judgement: Judgement, hidden: Collection[str], hidden_failing: int, shown: set[str]) -> str:
    lines = [f"Verification: {judgement.verdict.value}"]
    # regressions first; a reason about one shown test is repeated by its block below
    for reason in sorted(judgement.reasons, key=lambda r: "passed at the base" not in r):
        if not mentions_hidden(reason, hidden) and reason.split(" ", 1)[0] not in shown:
            lines.append(f"- {reason}")
    if hidden_failing:
        lines.append(f"- {hidden_failing} hidden test{'s' if hidden_failing > 1 else ''} failed")
    return "\n".join(lines) + "\n"


def mentions_hidden(text: str, hidden: Collection[str]) -> bool:
    """True when text names a hidden test or its file (the digest never shows it)."""
    return any(name and (name in text or name.split("::", 1)[0] in text) for name in hidden)


def _block(candidate: TestRun, test_id: str, missing: str = "missing from the results") -> str:
    result = candidate.results.get(test_id)
    if result is None:
        return f"\n{test_id}: {missing}{nearest(test_id, candidate.results)}\n"
    lines = [f"{result.outcome.value.upper()} {test_id}"]
    lines += [f"  {line}" for line in result.message.strip().splitlines()[:MESSAGE_LINES]]
    trace = result.details.strip().splitlines()[-TRACE_LINES:]
    if trace:
        lines.append("  traceback (last lines):")
        lines += [f"    {line}" for line in trace]
    return "\n" + "\n".join(lines) + "\n"


def hidden_lines(hidden_tests: Path | None, checkout: Path, visible_files: Iterable[str]) -> frozenset[str]:
    """The lines of the hidden tests (a folder, or a patch's added lines) that would give one away in a visible
    test's output: long enough to tell, and in none of the visible test files a block may quote."""
    if hidden_tests is None:
        return frozenset()
    if hidden_tests.is_file():
        added = hidden_tests.read_text(encoding="utf-8", errors="replace").splitlines()
        lines = [line[1:] for line in added if line.startswith("+") and not line.startswith("+++")]
    else:
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in hidden_tests.rglob("*") if p.is_file()]
        lines = [line for text in texts for line in text.splitlines()]
    shared = {line.strip() for name in visible_files for line in (source_text(checkout, name) or "").splitlines()}
    return frozenset(s for line in lines if len(s := line.strip()) >= MIN_SECRET_CHARS and s not in shared)


def _unless_quoting(block: str, test_id: str, hidden: Collection[str], secrets: Collection[str]) -> str:
    names = {name.split("::", 1)[0] for name in hidden}
    quoted = any(name in block or name.rsplit("/", 1)[-1] in block for name in names)
    if quoted or any(secret in block for secret in secrets):
        return f"\n{test_id}: {WITHHELD}\n"
    return block


def _output_tail(output: str) -> str:
    tail = output.strip().splitlines()[-OUTPUT_TAIL_LINES:]
    return "\noutput (last lines):\n" + "\n".join(f"  {line}" for line in tail) + "\n"


def _fit(head: str, blocks: list[str], limit_bytes: int) -> str:
    text = _clip(head, limit_bytes)
    for i, block in enumerate(blocks):
        room = limit_bytes - _size(text)
        share = room // (len(blocks) - i)
        if room < MIN_BLOCK_BYTES:
            return _clip(text + f"\n(+{len(blocks) - i} more failing tests not shown)\n", limit_bytes)
        text += _squeeze(block, max(share, min(room, MIN_BLOCK_BYTES)))
    return text


def _squeeze(block: str, limit_bytes: int) -> str:
    """Keep a block's first lines (id, message) and the last traceback lines, which sit closest to the assertion."""
    if _size(block) <= limit_bytes:
        return block
    lines = block.splitlines()
    split = next((i for i, line in enumerate(lines) if line.startswith("    ")), len(lines))
    kept_head = "\n".join(lines[:split]) + "\n    [...]\n"
    tail: list[str] = []
    for line in reversed(lines[split:]):
        if _size(kept_head) + _size("\n".join([line, *tail])) + 1 > limit_bytes:
            break
        tail.insert(0, line)
    return _clip(kept_head + "\n".join(tail) + ("\n" if tail else ""), limit_bytes)


def _clip(text: str, limit_bytes: int) -> str:
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    marker = b" [...]\n"
    if limit_bytes <= len(marker):
        return data[:limit_bytes].decode(errors="ignore")
    return (data[: limit_bytes - len(marker)] + marker).decode(errors="ignore")


def _size(text: str) -> int:
    return len(text.encode())
