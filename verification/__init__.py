"""Verification: run a repository's tests on an agent's diff in a clean checkout and judge it.

Entry points: verify.run_baseline, verify.run_build (a merge build's run, canaries planted), verify.verify_diff
(and the pieces they use: patch.apply_patch, runner.run_tests, report.parse_junit, judge.judge,
digest.feedback_digest).
"""
