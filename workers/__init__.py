"""The data plane: the Celery app and tasks, the pipeline, the scheduler and reconciler, worktrees and agents."""
