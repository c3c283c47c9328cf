"""The API is the CLI's contract: the same field names, every field described, an index and offline docs."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Web


def test_the_api_index_answers_without_a_token_and_lists_every_endpoint(web: Web) -> None:
    index = web.client().get("/api")
    assert index.status_code == 200
    body = index.json()
    assert body["docs"] == "/api/docs" and body["openapi"] == "/api/openapi.json"
    listed = {(e["method"], e["path"]) for e in body["endpoints"]}
    assert {("GET", "/api/tickets"), ("POST", "/api/tickets"), ("GET", "/api/stats")} <= listed
    schema = web.client().get("/api/openapi.json", headers=web.headers("viewer")).json()
    documented = {(m.upper(), path) for path, ops in schema["paths"].items() for m in ops}
    assert listed == documented
    assert all(e["summary"] for e in body["endpoints"])


def test_api_docs_is_swagger_ui_from_this_server(web: Web) -> None:
    client = web.client()
    assert client.get("/api/docs", follow_redirects=False).headers["location"] == "/login"
    docs = client.get("/api/docs", headers=web.headers("viewer"))
    assert docs.status_code == 200 and "<script>" not in docs.text  # the CSP allows no inline script
    assets = ["/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css", "/static/swagger-init.js"]
    assert all(f'"{a}"' in docs.text for a in assets) and "//" not in docs.text.replace("://", "")
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 500, asset
    assert "SwaggerUIBundle" in client.get(assets[0]).text


def described(schema: dict[str, Any]) -> list[str]:
    """Every body field and parameter of the OpenAPI document that has no description."""
    missing = [
        f"{name}.{field}"
        for name, model in schema["components"]["schemas"].items()
        for field, prop in model.get("properties", {}).items()
        if not prop.get("description") and name not in ("HTTPValidationError", "ValidationError")
    ]
    for path, ops in schema["paths"].items():
        missing += [
            f"{path} {p['name']}" for op in ops.values() for p in op.get("parameters", []) if not p.get("description")
        ]
    return missing


def test_every_field_and_parameter_is_described(web: Web) -> None:
    schema = web.client().get("/api/openapi.json", headers=web.headers("viewer")).json()
    assert described(schema) == []


def test_a_ticket_body_takes_the_command_lines_names(web: Web) -> None:
    client = web.client()
    ticket = {"repo": "calc", "title": "add() again", "agent": "shell", "target": "tests/test_calc.py::test_add"}
    made = client.post("/api/tickets", json=ticket | {"agent_cmd": "true"}, headers=web.headers("admin"))
    assert made.status_code == 201, made.text
    [made_id] = [t["id"] for t in made.json()["tickets"]] if "tickets" in made.json() else [made.json()["id"]]
    shown = client.get(f"/api/tickets/{made_id}", headers=web.headers("viewer")).json()
    assert shown["agent"] == "shell"
    both = client.post("/api/tickets", json=ticket | {"agents": ["shell"]}, headers=web.headers("admin"))
    assert both.status_code == 422 and both.json()["detail"] == "give agent or agents, not both"
    budget = client.post("/api/tickets", json=ticket | {"budget_usd": -1}, headers=web.headers("admin"))
    assert budget.json()["detail"] == "budget_usd: must be at least 0 (got -1)"


def test_a_repo_takes_the_command_lines_singular_names_too() -> None:
    from db.specs import RepoSpec, SpecError, parse

    repo = parse(RepoSpec, {"name": "calc", "path": "/src/calc", "copy_file": ".env", "known_failure": ["a", "b"]})
    assert (repo.copy_files, repo.known_failures) == ([".env"], ["a", "b"])
    try:
        parse(RepoSpec, {"name": "calc", "path": "/src/calc", "agent_host": "a:1", "agent_hosts": ["b:2"]})
    except SpecError as exc:
        assert str(exc) == "give agent_host or agent_hosts, not both"
    else:
        raise AssertionError("both names were accepted")


def test_the_lists_of_tickets_come_a_bounded_page_at_a_time(web: Web) -> None:
    schema = web.client().get("/api/openapi.json", headers=web.headers("viewer")).json()["paths"]
    for path, cursor, most in (("/api/tickets", "before", 1000), ("/api/review", "after", 100)):
        params = {p["name"]: p["schema"] for p in schema[path]["get"]["parameters"]}
        assert params["limit"]["maximum"] == most and cursor in params and {"repo", "agent"} <= params.keys(), path
        assert "Link header" in schema[path]["get"]["description"], path
