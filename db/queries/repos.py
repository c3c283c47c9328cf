"""Registered repositories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Repo
from db.queries.errors import AlreadyExists, NotFound


def add_repo(s: Session, **fields: Any) -> Repo:
    if s.scalar(select(Repo).where(Repo.name == fields["name"])):
        raise AlreadyExists(f"repo {fields['name']!r} is already registered")
    repo = Repo(**fields)
    s.add(repo)
    s.flush()
    return repo


def get_repo(s: Session, name: str) -> Repo:
    repo = s.scalar(select(Repo).where(Repo.name == name))
    if repo is None:
        known = ", ".join(s.scalars(select(Repo.name).order_by(Repo.name))) or "none registered"
        raise NotFound(f"unknown repo {name!r} (known: {known})")
    return repo


def list_repos(s: Session) -> Sequence[Repo]:
    return s.scalars(select(Repo).order_by(Repo.name)).all()
