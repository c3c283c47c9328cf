"""tests/data holds fixture projects (with their own test suites) for Fleet to verify: never collect them here."""

collect_ignore_glob = ["*"]
