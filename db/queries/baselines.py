"""Test results at a base commit, stored once per (repository, commit, spec)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Baseline


def find_baseline(s: Session, repo_id: int, base_sha: str, spec_hash: str) -> Baseline | None:
    query = select(Baseline).where(
        Baseline.repo_id == repo_id, Baseline.base_sha == base_sha, Baseline.spec_hash == spec_hash
    )
    return s.scalar(query)


def save_baseline(s: Session, repo_id: int, base_sha: str, spec_hash: str, result: dict[str, Any]) -> Baseline:
    """Store a baseline; when another worker stored the same one first, keep and return theirs."""
    try:
        with s.begin_nested():
            baseline = Baseline(repo_id=repo_id, base_sha=base_sha, spec_hash=spec_hash, result=result)
            s.add(baseline)
    except IntegrityError:
        existing = find_baseline(s, repo_id, base_sha, spec_hash)
        assert existing is not None
        return existing
    return baseline


def count_baselines(s: Session, repo_id: int) -> int:
    return s.scalar(select(func.count()).select_from(Baseline).where(Baseline.repo_id == repo_id)) or 0
