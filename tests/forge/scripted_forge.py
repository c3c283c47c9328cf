"""A scripted GitHub on 127.0.0.1: the REST endpoints Fleet uses, GitHub's error shapes, and every request Fleet
sends checked against GitHub's published REST description (github-rest-fragment.json, see tests/forge/README.md).

Like the scripted model server, it is a fake at Fleet's own seam (the forge's HTTP API), not a mock of a library.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from werkzeug.test import EnvironBuilder

FRAGMENT = Path(__file__).with_name("github-rest-fragment.json")
DOCS = "https://docs.github.com/rest"
_API: OpenAPI | None = None


def _api() -> OpenAPI:
    global _API
    if _API is None:  # the fragment is GitHub's own, so its self-validation is skipped (seconds on the full one)
        _API = OpenAPI.from_dict(json.loads(FRAGMENT.read_text()), config=Config(spec_validator_cls=None))
    return _API


class Answer(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class ScriptedForge:
    """One repository, OWNER/NAME, on a scripted GitHub; tests add issues, comments, reviews and check runs."""

    def __init__(self, repo: str = "acme/shop", token: str = "forge-token-0123456789") -> None:
        self.repo, self.token = repo, token
        self.numbers = itertools.count(1)
        self.ids = itertools.count(1000)
        self.pulls: dict[int, dict[str, Any]] = {}
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.line_comments: dict[int, list[dict[str, Any]]] = {}
        self.reviews: dict[int, list[dict[str, Any]]] = {}
        self.check_runs: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []  # method, path with query, body, headers
        self.violations: list[str] = []
        self.rate_limited = 0  # how many next requests get the secondary rate limit
        self.stale_lists = 0  # how many next PR lists miss every PR (a PR opened meanwhile: a race, or a retried POST)
        self.lock = threading.Lock()
        self.url = ""

    # what tests script ---------------------------------------------------------------------------------------
    def add_issue(self, title: str, body: str = "", labels: tuple[str, ...] = ()) -> int:
        number = next(self.numbers)
        self.issues[number] = {
            "id": next(self.ids),
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "html_url": f"{self.url}/{self.repo}/issues/{number}",
            "labels": [{"name": label} for label in labels],
        }
        return number

    def comment(self, number: int, author: str, body: str) -> int:
        item = {"id": next(self.ids), "body": body, "user": {"login": author}}
        self.comments.setdefault(number, []).append(item)
        return int(item["id"])

    def review(self, number: int, author: str, state: str, body: str) -> None:
        self.reviews.setdefault(number, []).append(
            {"id": next(self.ids), "state": state, "body": body, "user": {"login": author}}
        )

    def check_run(self, sha: str, name: str, conclusion: str, summary: str = "") -> None:
        run = {"id": next(self.ids), "name": name, "status": "completed", "conclusion": conclusion}
        self.check_runs.setdefault(sha, []).append(run | {"output": {"title": name, "summary": summary}})

    # the endpoints ------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        prefix = f"/repos/{self.repo}/"
        if not path.startswith(prefix):
            raise Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        rest = path[len(prefix) :]
        for pattern, name in ROUTES:
            match = re.fullmatch(pattern, f"{method} {rest}")
            if match:
                return getattr(self, name)(query, body, *match.groups())  # type: ignore[no-any-return]
        raise Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    def list_pulls(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        head = query.get("head", "")
        if self.stale_lists > 0:
            self.stale_lists -= 1
            return 200, []
        found = [
            p
            for p in self.pulls.values()
            if p["state"] == query.get("state", "open") and (not head or f"{self.owner}:{p['head']['ref']}" == head)
        ]
        return 200, found

    @property
    def owner(self) -> str:
        return self.repo.split("/")[0]

    def create_pull(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in self.pulls.values()):
            message = f"A pull request already exists for {self.owner}:{body['head']}."
            raise Answer(422, _invalid([{"resource": "PullRequest", "code": "custom", "message": message}]))
        number = next(self.numbers)
        pull = {
            "id": next(self.ids),
            "number": number,
            "state": "open",
            "html_url": f"{self.url}/{self.repo}/pull/{number}",
            "title": body["title"],
            "body": body.get("body") or "",
            "draft": bool(body.get("draft")),
            "head": {"ref": body["head"]},
            "base": {"ref": body["base"]},
            "labels": [],
        }
        self.pulls[number] = pull
        return 201, pull

    def update_pull(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        pull = self._pull(number)
        pull.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
        return 200, pull

    def get_pull(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        return 200, self._pull(number)

    def merge(self, number: int) -> None:
        """A person merges the pull request on the forge."""
        self.pulls[number].update(state="closed", merged_at="2026-12-01T12:00:00Z")

    def _pull(self, number: str) -> dict[str, Any]:
        if int(number) not in self.pulls:
            raise Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        return self.pulls[int(number)]

    def list_reviews(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        return 200, _page(self.reviews.get(int(self._pull(number)["number"]), []), query)

    def list_line_comments(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        return 200, _page(self.line_comments.get(int(number), []), query)

    def list_issues(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        wanted = {label for label in query.get("labels", "").split(",") if label}
        issues = [
            i
            for i in self.issues.values()
            if i["state"] == query.get("state", "open") and wanted <= {label["name"] for label in i["labels"]}
        ]
        pulls = [p | {"pull_request": {"url": p["html_url"]}} for p in self.pulls.values() if not wanted]
        return 200, _page(sorted(issues + pulls, key=lambda i: i["number"]), query)

    def list_comments(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        return 200, _page(self.comments.get(int(number), []), query)

    def add_labels(self, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
        item = self.pulls.get(int(number)) or self.issues.get(int(number))
        if item is None:
            raise Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        names = body["labels"] if isinstance(body, dict) else body
        item["labels"] += [{"name": n} for n in names if {"name": n} not in item["labels"]]
        return 200, item["labels"]

    def create_status(self, query: dict[str, str], body: Any, sha: str) -> tuple[int, Any]:
        status = {"id": next(self.ids), "state": body["state"], "context": body.get("context", "default")}
        self.statuses.setdefault(sha, []).append(status | body)
        return 201, status

    def list_check_runs(self, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
        runs = self.check_runs.get(ref, [])
        return 200, {"total_count": len(runs), "check_runs": _page(runs, query)}

    # the server ---------------------------------------------------------------------------------------------
    def validate(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        request = EnvironBuilder(
            method=method,
            path=parts.path,
            query_string=parts.query,
            base_url="http://127.0.0.1/",
            data=body or None,
            headers={"Content-Type": headers.get("content-type", "application/json")} if body else {},
        ).get_request()
        try:
            _api().validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:  # the validator's many error types: every one is a request GitHub would refuse
            self.violations.append(f"{method} {url}: {exc}")

    @contextmanager
    def serving(self) -> Iterator[ScriptedForge]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


ROUTES = (
    (r"GET pulls", "list_pulls"),
    (r"POST pulls", "create_pull"),
    (r"PATCH pulls/(\d+)", "update_pull"),
    (r"GET pulls/(\d+)", "get_pull"),
    (r"GET pulls/(\d+)/reviews", "list_reviews"),
    (r"GET pulls/(\d+)/comments", "list_line_comments"),
    (r"GET issues", "list_issues"),
    (r"GET issues/(\d+)/comments", "list_comments"),
    (r"POST issues/(\d+)/labels", "add_labels"),
    (r"POST statuses/([0-9a-f]{40})", "create_status"),
    (r"GET commits/([^/]+)/check-runs", "list_check_runs"),
)


def _invalid(errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS, "status": "422"}


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    size, page = int(query.get("per_page", 30)), int(query.get("page", 1))
    return items[(page - 1) * size : page * size]


def _handler(forge: ScriptedForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with forge.lock:
                forge.requests.append((self.command, self.path, raw.decode(errors="replace"), headers))
                try:
                    status, body, extra = *self._answer(raw, headers), {}
                except Answer as answer:
                    status, body, extra = answer.status, answer.body, answer.headers
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json; charset=utf-8", **extra}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, raw: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            if headers.get("authorization", "") not in (f"Bearer {forge.token}", f"token {forge.token}"):
                raise Answer(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
            if forge.rate_limited > 0:
                forge.rate_limited -= 1
                message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                raise Answer(
                    403, {"message": message, "documentation_url": DOCS, "status": "403"}, {"retry-after": "1"}
                )
            forge.validate(self.command, self.path, raw, headers)
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            return forge.handle(self.command, parts.path, query, json.loads(raw) if raw else None)

        do_GET = do_POST = do_PATCH = _serve

    return Handler
