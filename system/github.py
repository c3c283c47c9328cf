"""The Forge of system/forge.py on GitHub (and GitHub Enterprise, by base URL), through githubkit.

githubkit retries a rate-limited request after GitHub's `retry-after` and a 5xx a few times; what still fails is
one ForgeError. Answers are read as plain JSON: only the fields Fleet uses, whatever the schema version adds.
githubkit is imported when a client is made (half a second): every CLI command imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from system.forge import GITHUB_API, ForgeError, Issue, PullRequest, Remark

STATUS_CONTEXT = "fleet/verification"
FAILED_CHECKS = {"failure", "timed_out", "cancelled", "action_required", "startup_failure"}
PAGE = 100
MAX_PAGES = 10
TIMEOUT_SECONDS = 30.0


class GitHubForge:
    """One GitHub repository, OWNER/NAME, at base_url with a token (never logged, never in an error)."""

    def __init__(self, repo: str, token: str, base_url: str = "", transport: httpx.BaseTransport | None = None) -> None:
        from githubkit import GitHub

        self.owner, self.name = repo.split("/", 1)
        self.gh = GitHub(
            token or None,
            base_url=(base_url or GITHUB_API).rstrip("/") + "/",
            timeout=TIMEOUT_SECONDS,
            http_cache=False,
            transport=transport,
            user_agent="fleet",
        )

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from githubkit.exception import GitHubException, RequestFailed

        try:
            return fn(self.owner, self.name, *args, **kwargs).json()
        except RequestFailed as exc:
            raise ForgeError(exc.response.status_code, _message(exc.response.text)) from None
        except (GitHubException, httpx.HTTPError) as exc:
            raise ForgeError(0, type(exc).__name__) from None

    def _pages(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._call(fn, *args, per_page=PAGE, page=page, **kwargs)
            items.extend(batch if isinstance(batch, list) else batch.get("check_runs", []))
            if len(batch if isinstance(batch, list) else batch.get("check_runs", [])) < PAGE:
                break
        return items

    def open_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        found = self._find(head)
        if found is None:
            try:
                data = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
                made = self._call(self.gh.rest.pulls.create, data=data)
                return PullRequest(int(made["number"]), str(made["html_url"]))
            except ForgeError as exc:  # a retried POST, or a PR opened meanwhile: GitHub says it exists
                if exc.status != 422 or "already exists" not in exc.message:
                    raise
                found = self._find(head)
                if found is None:
                    raise
        self._call(self.gh.rest.pulls.update, found.number, data={"title": title, "body": body})
        return found

    def _find(self, head: str) -> PullRequest | None:
        pulls = self._call(self.gh.rest.pulls.list, state="open", head=f"{self.owner}:{head}")
        return PullRequest(int(pulls[0]["number"]), str(pulls[0]["html_url"])) if pulls else None

    def pr_state(self, number: int) -> str:
        pull = self._call(self.gh.rest.pulls.get, number)
        return "merged" if pull.get("merged_at") else str(pull.get("state") or "open")

    def add_labels(self, number: int, labels: list[str]) -> None:
        if labels:
            self._call(self.gh.rest.issues.add_labels, number, data={"labels": labels})

    def set_status(self, sha: str, state: str, description: str, target_url: str) -> None:
        data = {"state": state, "context": STATUS_CONTEXT, "description": description[:140]}
        if target_url:
            data["target_url"] = target_url
        self._call(self.gh.rest.repos.create_commit_status, sha, data=data)

    def remarks(self, number: int, head_sha: str) -> list[Remark]:
        found = [_comment(c, "comment") for c in self._pages(self.gh.rest.issues.list_comments, number)]
        found += [_comment(c, "line-comment") for c in self._pages(self.gh.rest.pulls.list_review_comments, number)]
        for review in self._pages(self.gh.rest.pulls.list_reviews, number):
            if review.get("state") == "CHANGES_REQUESTED":
                found.append(Remark(f"review:{review['id']}", "review", _login(review), review.get("body") or ""))
        if head_sha:
            for run in self._pages(self.gh.rest.checks.list_for_ref, head_sha):
                if run.get("conclusion") in FAILED_CHECKS:
                    found.append(_check(run, head_sha))
        return found

    def issues(self, label: str) -> list[Issue]:
        found = self._pages(self.gh.rest.issues.list_for_repo, state="open", labels=label)
        return [
            Issue(int(i["number"]), str(i.get("title") or ""), str(i.get("body") or ""), str(i.get("html_url") or ""))
            for i in found
            if "pull_request" not in i
        ]


def _login(item: dict[str, Any]) -> str:
    return str((item.get("user") or {}).get("login") or "")


def _comment(c: dict[str, Any], kind: str) -> Remark:
    key = f"{kind}:{c['id']}"
    return Remark(key, kind, _login(c), str(c.get("body") or ""), str(c.get("path") or ""), int(c.get("line") or 0))


def _check(run: dict[str, Any], sha: str) -> Remark:
    output = run.get("output") or {}
    words = [f"The check {run.get('name', '')!r} ended {run.get('conclusion')}."]
    words += [str(output[k]) for k in ("title", "summary", "text") if output.get(k)]
    return Remark(f"check:{run['id']}", "check", "", "\n".join(words), sha=sha)


def _message(text: str) -> str:
    """GitHub's `message` (and the first error's), on one line and short."""
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    errors = data.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    detail = first.get("message") or first.get("code") or ""
    return " ".join(f"{data.get('message', '')} {detail}".split())[:300]


def webhook_remarks(event: str, payload: dict[str, Any]) -> tuple[str, list[int], list[Remark]]:
    """From a webhook delivery: the repository (OWNER/NAME), the pull request numbers it is about, and what was said,
    with the same keys the poll gives them (so either acts on an item once). Other events give no remarks."""
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    action = payload.get("action")
    if event == "issue_comment" and action == "created" and (payload.get("issue") or {}).get("pull_request"):
        return repo, [int(payload["issue"]["number"])], [_comment(payload["comment"], "comment")]
    if event == "pull_request_review_comment" and action == "created":
        return repo, [int(payload["pull_request"]["number"])], [_comment(payload["comment"], "line-comment")]
    review = payload.get("review") or {}
    if event == "pull_request_review" and action == "submitted" and review.get("state") == "changes_requested":
        remark = Remark(f"review:{review['id']}", "review", _login(review), str(review.get("body") or ""))
        return repo, [int(payload["pull_request"]["number"])], [remark]
    run = payload.get("check_run") or {}
    if event == "check_run" and action == "completed" and run.get("conclusion") in FAILED_CHECKS:
        return (
            repo,
            [int(p["number"]) for p in run.get("pull_requests") or []],
            [_check(run, str(run.get("head_sha") or ""))],
        )
    return repo, [], []
