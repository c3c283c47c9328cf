"""Wire constants: queue and task names. Only ids travel through the queue."""

AGENT_QUEUE = "fleet.agents"
VERIFY_QUEUE = "fleet.verify"
QUEUES = (AGENT_QUEUE, VERIFY_QUEUE)

# A worker's exit code after Ctrl-C: 128 + SIGINT, as a shell reports a process Ctrl-C ended.
INTERRUPTED = 130

RUN_AGENT_TASK = "fleet.run_agent"
VERIFY_TASK = "fleet.verify"
MERGE_BUILD_TASK = "fleet.merge_build"  # verify one merge queue build (on the verify queue)
MERGE_PASS_TASK = "fleet.merge_pass"  # one merge queue pass over a repository

# Above the longest agent run Fleet allows, so Redis never re-delivers a message that is merely waiting;
# lost messages are re-sent by the reconciler from the database instead.
VISIBILITY_TIMEOUT_SECONDS = 12 * 3600

# A key Fleet keeps in a Redis broker: found missing, the broker restarted empty and every waiting attempt's
# message is gone, so the reconciler sends them all again at once.
BROKER_CANARY = "fleet:broker-canary"
