"""The two units of work: run an agent on an attempt, and verify the attempt's diff. Each is idempotent."""

from workers.pipeline.agent_plan import url_authority
from workers.pipeline.agent_step import run_agent_attempt
from workers.pipeline.job import Job
from workers.pipeline.verify_step import spec_for, spec_hash, verify_attempt

__all__ = ["Job", "run_agent_attempt", "spec_for", "spec_hash", "url_authority", "verify_attempt"]
