"""The Celery tasks: a few lines each; they take an id and call a plain function."""

from __future__ import annotations

from celery import Celery

from workers.constants import RUN_AGENT_TASK, VERIFY_TASK
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
