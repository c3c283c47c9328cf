"""The JSON API: every route, each role boundary (401/403), bad input, and the actions the CLI also does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from db import queries
from system.git import git
from tests.web.conftest import ROLES, Web

MISSING = 999_999
# (method, path, json body, the least role that may call it). Ids are unknown on purpose: a role that may call
# the route gets past the guard and then 404 or 422, so the boundary is tested without changing anything.
GUARDED: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/me", None, "viewer"),
    ("GET", "/api/tickets", None, "viewer"),
    ("GET", f"/api/tickets/{MISSING}", None, "viewer"),
    ("GET", f"/api/tickets/{MISSING}/runs", None, "viewer"),
    ("GET", f"/api/tickets/{MISSING}/events", None, "viewer"),
    ("GET", f"/api/runs/{MISSING}", None, "viewer"),
    ("GET", f"/api/attempts/{MISSING}", None, "viewer"),
    ("GET", f"/api/verifications/{MISSING}", None, "viewer"),
    ("GET", "/api/review", None, "viewer"),
    ("GET", "/api/merge", None, "viewer"),
    ("GET", "/api/workers", None, "viewer"),
    ("GET", "/api/stats", None, "viewer"),
    ("GET", "/api/repos", None, "viewer"),
    ("GET", "/api/openapi.json", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
    ("GET", f"/events/tickets/{MISSING}", None, "viewer"),
    ("POST", "/api/tickets", {}, "submitter"),
    ("POST", f"/api/tickets/{MISSING}/cancel", None, "submitter"),
    ("POST", f"/api/tickets/{MISSING}/retry", None, "submitter"),
    ("POST", f"/api/tickets/{MISSING}/approve", None, "reviewer"),
    ("POST", f"/api/tickets/{MISSING}/reject", {"feedback": "no"}, "reviewer"),
    ("POST", "/api/repos", {}, "admin"),
    ("GET", "/api/tokens", None, "admin"),
    ("POST", "/api/tokens", {}, "admin"),
    ("DELETE", f"/api/tokens/{MISSING}", None, "admin"),
]


def call(client: Any, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body", "least"), GUARDED, ids=[f"{m} {p}" for m, p, _, _ in GUARDED])
def test_every_route_needs_a_token_and_enough_role(web: Web, method: str, path: str, body: Any, least: str) -> None:
    client = web.client()
    answer = call(client, method, path, body)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    for role in ROLES:
        answer = call(client, method, path, body, web.headers(role))
        if ROLES.index(role) < ROLES.index(least):
            assert answer.status_code == 403, (role, answer.text)
        else:
            assert answer.status_code not in (401, 403), (role, answer.text)


@pytest.mark.parametrize(
    "bad",
    ["", "Bearer", "Bearer nonsense", "Bearer fleet_1_wrongsecret", "Bearer fleet_x_y", "Basic dXNlcjpwYXNz"],
)
def test_malformed_or_wrong_tokens_are_401(web: Web, bad: str) -> None:
    answer = web.client().get("/api/me", headers={"Authorization": bad} if bad else {})
    assert answer.status_code == 401


def test_forged_bytes_in_tokens_cookies_csrf_and_ids_are_refused_not_errors(web: Web) -> None:
    # Headers arrive as Latin-1: `\xb2` is `²`, which str.isdigit() takes and int() refuses; `\xe9` is text that
    # hmac.compare_digest() refuses with an exception where it should only be unequal.
    client = web.client()
    assert client.get("/api/me", headers={"Authorization": b"Bearer fleet_\xb2_abc"}).status_code == 401
    assert client.get("/api/me", headers={"Cookie": b"fleet_session=\xb2.1700000000.x"}).status_code == 401
    assert client.get("/api/me", headers={"Cookie": b"fleet_session=1.1700000000000.\xe9"}).status_code == 401
    login = client.post(
        "/login",
        data={"token": "x", "csrf": "\xe9"},
        headers={"Cookie": "fleet_login_csrf=abc"},
        follow_redirects=False,
    )
    assert (login.status_code, login.headers["location"]) == (303, "/login?error=expired")
    huge = client.get("/api/tickets/99999999999999999999999", headers=web.headers("viewer"))
    assert huge.status_code == 400 and huge.json() == {"detail": "a number in the request is out of range"}


def test_a_notification_url_is_shown_to_admins_only(web: Web) -> None:
    hook = "https://hooks.slack.example/services/T0/B0/secretpart"
    web.fleet.run("repo", "update", "calc", "--notify-url", hook)
    try:
        shown = {role: web.client().get("/api/repos", headers=web.headers(role)).json() for role in ("viewer", "admin")}
    finally:
        web.fleet.run("repo", "update", "calc", "--notify-url", "")
    [viewer] = [r for r in shown["viewer"] if r["name"] == "calc"]
    [admin] = [r for r in shown["admin"] if r["name"] == "calc"]
    assert viewer["settings"]["notify_url"] == "[hidden: only an admin sees it]" and "secretpart" not in str(viewer)
    assert admin["settings"]["notify_url"] == hook


def test_without_a_token_only_login_and_health_answer(web: Web) -> None:
    client = web.client()
    assert client.get("/healthz").text == "ok"
    assert client.get("/login").status_code == 200
    for page in ("/", "/tickets", f"/tickets/{web.tickets['review_a']}", "/review", "/tokens", "/fragments/fleet"):
        answer = client.get(page, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), page
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN: not served


def test_reads_return_what_the_cli_shows(web: Web) -> None:
    client, h = web.client(), web.headers("viewer")
    tid = web.tickets["review_a"]
    assert client.get("/api/me", headers=h).json() == {"id": 1, "name": "viewer1", "role": "viewer"}
    ticket = client.get(f"/api/tickets/{tid}", headers=h).json()
    assert ticket["status"] in ("needs_review", "approved")
    [run] = ticket["runs"]
    [attempt] = run["attempts"]
    assert (run["number"], attempt["run"], attempt["number"]) == (1, 1, 1)  # counted from 1, as the pages show
    assert attempt["verification"]["fail_to_pass"] == ["tests/test_calc.py::test_add"]
    assert client.get(f"/api/tickets/{tid}/runs", headers=h).json() == ticket["runs"]
    assert [e["kind"] for e in client.get(f"/api/tickets/{tid}/events", headers=h).json()][0] == "submitted"

    full = client.get(f"/api/attempts/{attempt['id']}", headers=h).json()
    assert "return a + b" in full["diff"] and full["transcript"] and full["ticket"] == tid
    with web.fleet.db().session() as s:
        run_id = queries.get_attempt(s, attempt["id"]).run_id
        verification_id = queries.get_attempt(s, attempt["id"]).verification.id
    run_view = client.get(f"/api/runs/{run_id}", headers=h).json()
    assert run_view["ticket"] == tid and run_view["attempts"][0]["id"] == attempt["id"]
    assert run_view["number"] == 1 and "index" not in run_view
    verification = client.get(f"/api/verifications/{verification_id}", headers=h).json()
    assert verification["verdict"] == "passed" and verification["attempt"] == attempt["id"]
    assert "passed" in verification["output"]

    failed = client.get(f"/api/tickets/{web.tickets['failed']}", headers=h).json()
    assert failed["runs"][0]["attempts"][0]["feedback_out"]


def test_lists_filter_by_status_repo_and_agent(web: Web) -> None:
    client, h = web.client(), web.headers("viewer")
    failed = client.get("/api/tickets", params={"status": "failed"}, headers=h).json()
    assert web.tickets["failed"] in [t["id"] for t in failed]
    assert all(t["status"] == "failed" for t in failed)
    unknown = client.get("/api/tickets", params={"repo": "nope"}, headers=h)
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "unknown repo 'nope' (known: calc)"})
    assert len(client.get("/api/tickets", params={"repo": "calc", "agent": "shell"}, headers=h).json()) >= 6
    assert client.get("/api/tickets", params={"agent": "claude-code"}, headers=h).json() == []
    assert client.get("/api/tickets", params={"status": "bogus"}, headers=h).status_code == 422
    assert client.get("/api/tickets", params={"limit": 0}, headers=h).status_code == 422

    review = client.get("/api/review", headers=h).json()
    assert {t["status"] for t in review} == {"needs_review"}
    assert all(t["candidates"] and t["best_attempt"] == t["candidates"][0]["id"] for t in review)
    assert "calc" in [r["name"] for r in client.get("/api/repos", headers=h).json()]


def test_stats_and_workers(web: Web) -> None:
    client, h = web.client(), web.headers("viewer")
    stats = client.get("/api/stats", headers=h).json()
    assert stats["tickets"]["needs_review"] >= 1
    assert stats["last_day"]["verifications"] >= 5 and stats["last_day"]["passed"] >= 4
    assert stats["review_backlog"]["count"] >= 1 and stats["review_backlog"]["oldest_age_seconds"] >= 0
    assert set(stats["queues"]) == {"fleet.agents", "fleet.verify"}
    assert stats["verdicts"]["passed"] >= 4
    [shell] = [a for a in stats["agents"] if a["agent"] == "shell"]
    assert shell["verified"] >= 4 and shell["attempts_per_verified"] >= 1
    workers = client.get("/api/workers", headers=h).json()
    assert isinstance(workers, list)  # `fleet up --until-idle` has stopped; no live worker left


def test_approve_lands_the_branch_like_the_cli(web: Web) -> None:
    client, tid = web.client(), web.tickets["review_a"]
    answer = client.post(f"/api/tickets/{tid}/approve", headers=web.headers("reviewer"))
    assert answer.status_code == 200, answer.text
    [attempt] = client.get(f"/api/tickets/{tid}", headers=web.headers("viewer")).json()["runs"][0]["attempts"]
    chosen = {"id": attempt["id"], "run": 1, "number": 1}
    commit = git("rev-parse", f"fleet/ticket-{tid}", cwd=web.fleet.tmp / "calc").strip()
    assert answer.json() == {"id": tid, "status": "approved", "branch": f"fleet/ticket-{tid}", "commit": commit} | {
        "chosen": chosen,
        "pr_url": "",  # deliver = branch: no pull request
        "queued_to": "",  # and no merge queue
        "mirror": "",  # a repository registered by its folder: the branch is there
        "fetch": "",
    }
    assert "return a + b" in git("show", f"fleet/ticket-{tid}:calc.py", cwd=web.fleet.tmp / "calc")
    again = client.post(f"/api/tickets/{tid}/approve", headers=web.headers("admin"))
    assert again.status_code == 409 and "not waiting for review" in again.json()["detail"]
    events = client.get(f"/api/tickets/{tid}/events", headers=web.headers("viewer")).json()
    assert events[-1]["kind"] == "approved" and events[-1]["actor"] == "reviewer1"


def test_reject_with_feedback_queues_a_new_attempt(web: Web) -> None:
    client, tid = web.client(), web.tickets["review_b"]
    answer = client.post(
        f"/api/tickets/{tid}/reject", json={"feedback": "Use a docstring."}, headers=web.headers("reviewer")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "queued" and answer.json()["attempt"]
    assert answer.json()["chosen"]["run"] == 1 and answer.json()["chosen"]["id"] != answer.json()["attempt"]
    attempt = client.get(f"/api/attempts/{answer.json()['attempt']}", headers=web.headers("viewer")).json()
    assert "Use a docstring." in attempt["prompt"]


def test_submitters_cancel_and_retry_only_their_own(web: Web) -> None:
    client = web.client()
    queued, failed = web.tickets["queued"], web.tickets["failed"]
    assert client.post(f"/api/tickets/{queued}/cancel", headers=web.headers("other")).status_code == 403
    assert client.post(f"/api/tickets/{failed}/retry", headers=web.headers("other")).status_code == 403
    answer = client.post(f"/api/tickets/{queued}/cancel", headers=web.headers("submitter"))
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    again = client.post(f"/api/tickets/{queued}/cancel", headers=web.headers("submitter"))
    assert again.status_code == 409
    # admins retry anyone's; the cancelled ticket, so the shared failed one keeps its history for other tests
    answer = client.post(f"/api/tickets/{queued}/retry", headers=web.headers("admin"))
    assert answer.status_code == 200 and len(answer.json()["attempts"]) == 1
    status = client.get(f"/api/tickets/{queued}", headers=web.headers("viewer")).json()["status"]
    assert status == "queued"


def test_submit(web: Web) -> None:
    client = web.client()
    # A submitter may not give a command, so names an agent that needs none (the repo's default is shell).
    body = {"repo": "calc", "title": "From the API", "agents": ["aider"]}
    answer = client.post("/api/tickets", json=body, headers=web.headers("submitter"))
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert (created["status"], created["repo"], created["agent"]) == ("queued", "calc", "aider")
    with web.fleet.db().session() as s:
        assert queries.get_ticket(s, created["id"]).submitted_by == "tester"
    # The submitter who made it may cancel it.
    assert client.post(f"/api/tickets/{created['id']}/cancel", headers=web.headers("submitter")).status_code == 200

    command = {"repo": "calc", "title": "custom command", "agent_cmd": "true"}
    assert client.post("/api/tickets", json=command, headers=web.headers("reviewer")).status_code == 403
    assert client.post("/api/tickets", json=command, headers=web.headers("admin")).status_code == 201
    for risky in ({"agent_args": ["--yolo"]}, {"agent_env": ["PATH"]}):
        body = {"repo": "calc", "title": "risky"} | risky
        assert client.post("/api/tickets", json=body, headers=web.headers("reviewer")).status_code == 403


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"repo": "nope", "title": "x"}, 400),
        ({"repo": "calc", "title": "x", "base": "no-such-ref"}, 400),
        ({"repo": "calc", "title": ""}, 422),
        ({"repo": "calc", "title": "x", "attempts": 0}, 422),
        ({"repo": "calc", "title": "x", "surprise": 1}, 422),
        ({"repo": "calc", "title": "x", "until": "sometime"}, 422),
        ({"repo": "calc", "title": "x", "agents": ["no-such-agent"]}, 422),
        ([1, 2, 3], 422),
    ],
)
def test_submit_refuses_bad_input(web: Web, body: Any, status: int) -> None:
    answer = web.client().post("/api/tickets", json=body, headers=web.headers("submitter"))
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_malformed_json_unknown_ids_and_huge_bodies(web: Web) -> None:
    client, h = web.client(), web.headers("admin") | {"Content-Type": "application/json"}
    assert client.post("/api/tickets", content=b"{not json", headers=h).status_code == 422
    assert client.post("/api/tickets", content=b"\xff\xfe", headers=h).status_code in (400, 422)
    assert client.get("/api/tickets/abc", headers=h).status_code == 422
    for path in ("/api/tickets/0", f"/api/attempts/{MISSING}", f"/api/runs/{MISSING}", f"/api/verifications/{MISSING}"):
        answer = client.get(path, headers=h)
        assert answer.status_code == 404 and "unknown" in answer.json()["detail"], path
    huge = json.dumps({"repo": "calc", "title": "x", "body": "y" * 2_000_000}).encode()
    assert client.post("/api/tickets", content=huge, headers=h).status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit is counted as the body streams in
        for _ in range(30):
            yield b" " * 100_000

    assert client.post("/api/tickets", content=chunks(), headers=h).status_code == 413
    assert client.post("/login", data={"token": "x" * 2_000_000}).status_code == 413


def test_tokens_are_created_once_listed_without_secrets_and_revoked(web: Web) -> None:
    client, admin = web.client(), web.headers("admin")
    answer = client.post("/api/tokens", json={"role": "viewer", "name": "temp-viewer"}, headers=admin)
    assert answer.status_code == 201
    created = answer.json()
    token = created.pop("token")
    assert token.startswith(f"fleet_{created['id']}_")
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "temp-viewer"
    listed = client.get("/api/tokens", headers=admin).text
    assert token.split("_", 2)[2] not in listed and "secret_hash" not in listed and '"token"' not in listed
    assert client.post("/api/tokens", json={"role": "viewer", "name": "temp-viewer"}, headers=admin).status_code == 409
    assert client.post("/api/tokens", json={"role": "god"}, headers=admin).status_code == 422
    assert client.post("/api/tokens", json={"role": "viewer", "name": "<script>"}, headers=admin).status_code == 422
    assert client.delete(f"/api/tokens/{created['id']}", headers=admin).json()["revoked_at"]
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_no_answer_contains_a_secret(web: Web) -> None:
    client = web.client()
    secrets = [t.split("_", 2)[2] for t in web.tokens.values()]
    with web.fleet.db().session() as s:
        from db import tokens

        hashes = [t.secret_hash for t in tokens.list_tokens(s, include_revoked=True)]
    paths = [
        "/api/tickets",
        "/api/review",
        "/api/stats",
        "/api/tokens",
        "/metrics",
        "/",
        "/tickets",
        "/review",
        "/tokens",
    ]
    paths.append(f"/tickets/{web.tickets['review_c']}")
    for path in paths:
        text = client.get(path, headers=web.headers("admin")).text
        assert not any(secret in text for secret in secrets + hashes), path


def test_openapi_lists_every_api_route(web: Web) -> None:
    schema = web.client().get("/api/openapi.json", headers=web.headers("viewer")).json()
    paths = set(schema["paths"])
    assert {"/api/tickets", "/api/tickets/{ticket_id}", "/api/tickets/{ticket_id}/approve", "/api/stats"} <= paths
    assert {"/api/runs/{run_id}", "/api/attempts/{attempt_id}", "/api/verifications/{verification_id}"} <= paths
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert not any(p.startswith(("/tickets", "/login", "/events")) for p in paths)  # pages stay out of the API


def test_admins_register_repos(web: Web) -> None:
    from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

    client, admin = web.client(), web.headers("admin")
    path = web.fleet.tmp / "calc2"
    write_sample_repo(path)
    body = {"name": "calc2", "path": str(path), "test_cmd": SAMPLE_TEST_CMD}
    assert client.post("/api/repos", json=body, headers=web.headers("reviewer")).status_code == 403
    answer = client.post("/api/repos", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["name"], answer.json()["test_cmd"]) == ("calc2", SAMPLE_TEST_CMD)
    assert client.post("/api/repos", json=body, headers=admin).status_code == 409
    missing = client.post("/api/repos", json={"name": "ghost", "path": str(web.fleet.tmp / "nope")}, headers=admin)
    assert missing.status_code == 400 and missing.json()["detail"]
    assert client.post("/api/repos", json={"name": "x"}, headers=admin).status_code == 422
