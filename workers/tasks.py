"""The Celery tasks: a few lines each; they take an id and call a plain function."""

from __future__ import annotations

from celery import Celery

from workers.constants import MERGE_BUILD_TASK, MERGE_PASS_TASK, RUN_AGENT_TASK, VERIFY_TASK
from workers.merge_build import verify_build
from workers.merge_queue import advance
from workers.pipeline import run_agent_attempt, verify_attempt
from workers.runtime import WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    """Bind the tasks to this process's runtime (its leases, pools and database)."""

    @app.task(name=RUN_AGENT_TASK, ignore_result=True)
    def run_agent(attempt_id: int) -> None:
        run_agent_attempt(runtime, attempt_id)

    @app.task(name=VERIFY_TASK, ignore_result=True)
    def verify(attempt_id: int) -> None:
        runtime.verify_later(verify_attempt, attempt_id)  # never holds the slot that received it

    @app.task(name=MERGE_BUILD_TASK, ignore_result=True)
    def merge_build(entry_id: int) -> None:
        verify_build(runtime, entry_id, runtime.dispatcher.send_builds, runtime.dispatcher.send)

    @app.task(name=MERGE_PASS_TASK, ignore_result=True)
    def merge_pass(repo_id: int) -> None:
        advance(runtime.db, runtime.settings, repo_id, runtime.dispatcher.send_builds, runtime.dispatcher.send)
