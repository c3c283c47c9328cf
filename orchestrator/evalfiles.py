"""The evaluation report as files to share: Markdown (a leaderboard and the agreement notes) and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_FIELDS = (
    "agent",
    "model",
    "samples",
    "finished",
    "solved",
    "tasks_solved",
    "tasks",
    "cost_usd",
    "cost_per_solved_usd",
    "seconds_per_solved",
    "tokens",
    "error_rate",
)


def pass_columns(report: dict[str, Any]) -> list[str]:
    ks = {int(k) for row in report["agents"] for k in row["pass_at"]}
    return [str(k) for k in sorted(ks)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    ks = pass_columns(report)
    head = ["agent", "model", *[f"pass@{k}" for k in ks], "solved", "cost/solved $", "s/solved", "gamed", "errors"]
    lines = [
        f"# Evaluation {report['name']}",
        "",
        f"{report['tasks']} tasks, {report['samples']} samples per task and agent. {report['estimator']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in report["agents"]:
        verdicts = row["verdicts"]
        cells = [
            row["agent"],
            row["model"],
            *[row["pass_at"].get(k) for k in ks],
            f"{row['solved']}/{row['finished']}",
            row["cost_per_solved_usd"],
            row["seconds_per_solved"],
            verdicts.get("gamed", 0),
            verdicts.get("error", 0),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", *_rules(report), *_agreement(report)]
    return "\n".join(lines) + "\n"


def _rules(report: dict[str, Any]) -> list[str]:
    lines = []
    for row in report["agents"]:
        for title, counts in (("gamed, by rule", row["gamed_by_rule"]), ("errors, by cause", row["errors_by_cause"])):
            if counts:
                lines.append(f"**{_cell(row['agent'])}, {title}:**")
                lines += [f"- {_cell(rule)}: {n}" for rule, n in sorted(counts.items())]
                lines.append("")
    return lines


def _agreement(report: dict[str, Any]) -> list[str]:
    counts = report["agreement"]["counts"]
    lines = [
        "## Agreement with the SWE-bench harness",
        "",
        f"agree {counts.get('agree', 0)}, Fleet stricter {counts.get('stricter', 0)}, "
        f"disagree {counts.get('disagree', 0)}, excluded (errors) {counts.get('excluded', 0)}",
        "",
    ]
    reasons = {d["why"] for d in report["agreement"]["differences"]}
    lines += [f"- {_cell(why)}" for why in sorted(reasons)]
    return lines


def to_csv(report: dict[str, Any]) -> str:
    ks = pass_columns(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*CSV_FIELDS, *[f"pass@{k}" for k in ks], "gamed", "errors"])
    for row in report["agents"]:
        verdicts = row["verdicts"]
        values = [row[name] for name in CSV_FIELDS] + [row["pass_at"].get(k) for k in ks]
        writer.writerow([*values, verdicts.get("gamed", 0), verdicts.get("error", 0)])
    return buffer.getvalue()
