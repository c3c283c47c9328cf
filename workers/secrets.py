"""Known credential shapes, redacted from everything Fleet stores or shows (transcripts, outputs, feedback)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from system.environ import derived

KNOWN_KEYS = re.compile(
    "|".join(
        (
            r"sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",  # Anthropic, OpenAI
            r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"github_pat_[A-Za-z0-9_]{30,}",
            r"AKIA[0-9A-Z]{16}",  # AWS access key ids
            r"AIza[0-9A-Za-z_-]{35}",  # Google API keys
            r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
            r"(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{20,}",
            r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",  # the user:password of a URL (a DSN)
        )
    )
)
# Names of variables whose values are secrets: *_PASS, *_PASSWORD, *_SK, *SECRET*, *TOKEN*, *_KEY, DSNs...
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|_PASS$|^PASS|CREDENTIAL|(?:^|_)SK(?:_|$)|DSN|DATABASE_URL|BROKER_URL|AUTH|COOKIE|SESSION",
    re.IGNORECASE,
)
MIN_VALUE_LENGTH = 8
REDACTED = "[redacted]"


def secret_values(env: Mapping[str, str] | None = None, names: Iterable[str] = ()) -> list[str]:
    """Values of the environment variables named like secrets (or listed in names) that are long enough to match;
    the worker's own (env None, no names) found once per change of its environment."""
    if env is None and not names:
        return list(derived(_named_secrets))
    return list(_named_secrets(os.environ if env is None else env, names))


def _named_secrets(env: Mapping[str, str], names: Iterable[str] = ()) -> tuple[str, ...]:
    wanted = set(names)
    values = {v for k, v in env.items() if (k in wanted or SECRET_NAME.search(k)) and len(v) >= MIN_VALUE_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, values: Iterable[str] = ()) -> str:
    """text with every known key shape and every given value replaced by [redacted]."""
    for value in values:
        if value:
            text = text.replace(value, REDACTED)
    return KNOWN_KEYS.sub(REDACTED, text)
