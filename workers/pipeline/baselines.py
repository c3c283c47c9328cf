"""The baselines an attempt needs, at its start and at its verification: run once per commit and spec, cached.

The agent step asks first (its context pack shows how the targets fail at the base), so verification finds the
baseline stored and the tests run once per base commit, not once per attempt. Without named targets, the base's
failing tests are run at its parents too (once per commit, cached alike) to tell known failures from the ticket's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from db import queries
from system.git import GitError, git
from verification.confined import fresh_folder
from verification.envcache import EnvCache
from verification.runner import RUNNER_REVISION, TestRun
from verification.targets import Targets, choose_targets, unknown_targets
from verification.verify import VerifySpec, hidden_names, run_baseline
from workers.pipeline.context import PackInput, build_pack, read_instructions, shown_targets, targets_command
from workers.pipeline.job import Job, declared_paths, hidden_paths
from workers.pipeline.setup_network import setup_egress
from workers.runtime import WorkerRuntime

MAX_NARROWED = 50


def spec_for(
    job: Job, settings_timeout: float, feedback_limit: int, setup_timeout: float, env_cache: EnvCache | None = None
) -> VerifySpec:
    extra: dict[str, Any] = {}
    if job.repo_settings.protect:
        extra["protect"] = tuple(job.repo_settings.protect)
    if job.repo_settings.hidden_tests:
        extra["hidden_tests"] = Path(job.repo_settings.hidden_tests)
    return VerifySpec(
        test_cmd=job.test_cmd,
        setup_cmd=job.setup_cmd,
        setup_timeout=setup_timeout,
        copy_files=job.copy_files,
        area=job.area,
        timeout=job.repo_settings.test_timeout or settings_timeout,
        targets=job.targets,
        allow_test_edits=job.repo_settings.allow_test_edits,
        network=job.repo_settings.test_network,
        setup_network=job.repo_settings.setup_network,
        feedback_limit=feedback_limit,
        env_cache=job.env_cache(env_cache) if env_cache else None,
        env_key_files=job.env_key_files,
        **extra,
    )


def spec_hash(spec: VerifySpec) -> str:
    """What a baseline depends on besides the commit: the command, the pins, the hidden tests' content, and how
    Fleet runs tests (RUNNER_REVISION: a baseline taken by an older runner is not reused)."""
    digest = hashlib.sha256()
    key = [
        spec.test_cmd,
        spec.setup_cmd,
        spec.copy_files,
        sorted(spec.protect),
        spec.pin_pytest,
        spec.sandbox,
        spec.network,
        spec.setup_network,
        RUNNER_REVISION,
    ]  # not spec.env: it carries this run's port block and the machine's environment
    digest.update(json.dumps(key, default=str).encode())
    if spec.hidden_tests is not None:
        hidden = spec.hidden_tests
        files = [hidden] if hidden.is_file() else sorted(p for p in hidden.rglob("*") if p.is_file())
        for path in files:
            digest.update(path.name.encode() + b"\0" + str(path.relative_to(hidden.parent)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def job_spec(rt: WorkerRuntime, job: Job, ports: dict[str, str]) -> VerifySpec:
    """The job's verification spec on this worker, with this attempt's port block."""
    spec = spec_for(
        job,
        rt.settings.test_timeout_seconds,
        rt.settings.feedback_limit_bytes,
        rt.settings.setup_timeout_seconds,
        rt.env_cache,
    )
    if job.hidden_patch:
        spec = replace(spec, hidden_tests=hidden_patch_file(rt.settings.home, job.hidden_patch))
    return replace(
        spec,
        env=dict(os.environ) | ports,
        env_names=tuple(job.repo_settings.test_env),
        granted_names=job.granted.get("test_env", ()),
        readable=declared_paths(rt, job),
        hidden=hidden_paths(rt, job),
        on_unconfined=functools.partial(rt.attempt_folders.mark_unconfined, job.attempt_id),
        setup_egress=setup_egress(rt, job, "verify-setup"),
    )


def hidden_patch_file(home: Path, patch: str) -> Path:
    """The ticket's test patch as a file named by its content under FLEET_HOME, which no sandbox shows an agent."""
    path = home / "hidden-patches" / f"{hashlib.sha256(patch.encode()).hexdigest()}.diff"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of this process and thread: verifications of one ticket may write the same file at once.
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        partial.write_text(patch, encoding="utf-8")
        partial.replace(path)
    return path


def targets_for(
    rt: WorkerRuntime, job: Job, spec: VerifySpec, pool: Any, base: TestRun, report_dir: Path, cancel: threading.Event
) -> Targets:
    """The ticket's targets and known failures; the parents' baselines are run only when they can matter."""
    listed = job.repo_settings.known_failures
    if job.targets or not base.failures or all(t in listed for t in base.failures):
        return choose_targets(job.targets, base, (), listed)
    parents = []
    narrowed = _only(spec, base.failures)
    for i, sha in enumerate(_parents(pool.mirror, job.base_sha)):
        run, _ = baseline_at(rt, job, narrowed, pool, report_dir / f"parent-{i}", cancel, sha)
        if run.error:
            return choose_targets((), base, (), listed)  # a parent that cannot run tells nothing
        parents.append(run)
    return choose_targets((), base, parents, listed)


def context_pack(
    rt: WorkerRuntime, job: Job, mirror: Path, cancel: threading.Event, attempt_dir: Path
) -> tuple[str, dict[str, str], str | None]:
    """The attempt's prompt and the variables naming its test commands, from the baseline (run now if unknown);
    and why no diff could be verified, when none could: the tests could not run at the base, or a named target is
    not a test there."""
    pool = rt.pool(job.repo_key, "verify", mirror)
    with rt.ports.lease(job.ports) as ports:
        spec = job_spec(rt, job, ports.env())
        base, _ = baseline_at(rt, job, spec, pool, attempt_dir / "baseline", cancel)
        if base.error and not cancel.is_set():  # once more: a one-off failure (a busy machine) must not end the attempt
            base, _ = baseline_at(rt, job, spec, pool, attempt_dir / "baseline", cancel)
        chosen = targets_for(rt, job, spec, pool, base, attempt_dir, cancel) if not base.error else None
    given = PackInput(
        prompt=job.prompt,
        test_cmd=job.test_cmd,
        targets=chosen.targets if chosen else job.targets,
        known=chosen.known if chosen else (),
        baseline=None if base.error else base,
        area=job.area,
        instructions=read_instructions(mirror, job.base_sha, job.repo_settings.agent_instructions),
        hidden=hidden_names(spec.hidden_tests),
        limit=job.repo_settings.context_limit,
    )
    env = {"FLEET_TEST_CMD": job.test_cmd, "FLEET_TARGETS": shlex.join(shown_targets(given))}
    return build_pack(given), env, base_error(base) if base.error else unknown_targets(job.targets, base)


def base_error(baseline: TestRun) -> str:
    """Why no diff can be verified at this base: the same words for the agent step and the verification."""
    return f"the tests could not run at the base commit: {baseline.error}"


def _only(spec: VerifySpec, tests: list[str]) -> VerifySpec:
    """At a parent only the base's failures matter: run those alone (cached apart, the command differs), unless
    there are so many that the whole suite is as cheap. A command that takes no test ids gives no results for
    them, and then no failure is known: the targets are what they were before known failures existed."""
    return replace(spec, test_cmd=targets_command(spec.test_cmd, tests)) if len(tests) <= MAX_NARROWED else spec


def _parents(mirror: Path, sha: str) -> list[str]:
    try:
        return git("rev-list", "--parents", "-n", "1", sha, cwd=mirror).split()[1:]
    except GitError:
        return []  # a shallow mirror, or a root commit


def baseline_at(
    rt: WorkerRuntime,
    job: Job,
    spec: VerifySpec,
    pool: Any,
    report_dir: Path,
    cancel: threading.Event,
    sha: str | None = None,
) -> tuple[TestRun, int | None]:
    """The test results at a commit (the base by default): from the database when known, else run once, stored."""
    sha = sha or job.base_sha
    key = spec_hash(spec)
    lock_key = _baseline_key(job.repo_id, sha, key)
    with rt.baseline_lock(lock_key):
        known = _known_baseline(rt, job.repo_id, sha, key)
        if known is not None:
            rt.remember_baseline(lock_key, *known)
            return TestRun.from_json(known[0]), known[1]
        with pool.lease(sha) as checkout:
            run = run_baseline(checkout.path, spec, fresh_folder(report_dir), cancel)  # an earlier delivery's
        if run.error:
            return run, None  # an environment failure is not a baseline worth keeping
        with rt.db.session() as s:
            stored = queries.save_baseline(s, job.repo_id, sha, key, run.to_json())
            result, baseline_id = stored.result, stored.id
        rt.remember_baseline(lock_key, result, baseline_id)
        return run, baseline_id


def known_baseline_at(rt: WorkerRuntime, repo_id: int, sha: str, spec: VerifySpec) -> TestRun | None:
    """The test results at a commit when this process or the database knows them (None: never run); never runs them."""
    known = _known_baseline(rt, repo_id, sha, spec_hash(spec))
    return None if known is None else TestRun.from_json(known[0])


def _baseline_key(repo_id: int, sha: str, key: str) -> str:
    return f"{repo_id}:{sha}:{key}"


def _known_baseline(rt: WorkerRuntime, repo_id: int, sha: str, key: str) -> tuple[dict[str, Any], int] | None:
    """A baseline this process read or stored before, else one another process stored: (its result as JSON, its id)."""
    known = rt.known_baseline(_baseline_key(repo_id, sha, key))
    if known is not None:
        return known
    with rt.db.session() as s:
        stored = queries.find_baseline(s, repo_id, sha, key)
        return None if stored is None else (stored.result, stored.id)
