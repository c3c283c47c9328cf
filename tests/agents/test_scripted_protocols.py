"""The scripted model server in each agent CLI's protocol: the shapes the CLIs read, the usage it bills, its 401."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from workers.agents.llm.scripted_server import ScriptedModelServer

KEY = "k-test"
SYSTEM = "You are a coding agent.\n - Primary working directory: /w\n"


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(api_key=KEY) as running:
        yield running


def _events(body: str) -> list[dict[str, Any]]:
    datas = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    return [json.loads(d) for d in datas if d != "[DONE]"]


def test_chat_completions_stream_a_tool_call_and_the_usage_asked_for(server: ScriptedModelServer) -> None:
    tools = [{"type": "function", "function": {"name": "bash"}}]
    request = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "tools": tools}
    request["messages"] = [{"role": "user", "content": "fix add"}]
    answer = httpx.post(f"{server.url}/chat/completions", json=request, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.text.rstrip().endswith("data: [DONE]")
    events = _events(answer.text)
    [call] = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls", [])]
    assert call["function"]["name"] == "bash" and "sed -i" in json.loads(call["function"]["arguments"])["command"]
    [bill] = server.bills
    assert events[-1]["choices"] == [] and events[-1]["usage"]["prompt_tokens"] == bill.tokens_in


def test_responses_end_with_response_completed_and_its_usage(server: ScriptedModelServer) -> None:
    request = {
        "model": "m",
        "stream": True,
        "instructions": SYSTEM,
        "tools": [{"type": "function", "name": "exec_command"}],
    }
    request["input"] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix add"}]}]
    events = _events(
        httpx.post(f"{server.url}/responses", json=request, headers={"Authorization": f"Bearer {KEY}"}).text
    )
    assert [e["type"] for e in events][0] == "response.created"
    [done] = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done["name"] == "exec_command" and "apply_patch" in json.loads(done["arguments"])["cmd"]
    [bill] = server.bills
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["input_tokens"] == bill.tokens_in


def test_anthropic_messages_stream_tool_use_with_the_working_directory(server: ScriptedModelServer) -> None:
    request = {
        "model": "claude-sonnet-4-5",
        "stream": True,
        "system": SYSTEM,
        "tools": [{"name": "Read"}, {"name": "Edit"}],
    }
    request["messages"] = [{"role": "user", "content": "fix add"}]
    events = _events(httpx.post(f"{server.root}/v1/messages", json=request, headers={"x-api-key": KEY}).text)
    assert [e["type"] for e in events][0] == "message_start" and events[-1]["type"] == "message_stop"
    [start] = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    [delta] = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert start["name"] == "Read" and json.loads(delta["partial_json"]) == {"file_path": "/w/calc.py"}
    [bill] = server.bills
    assert [e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta"] == [bill.tokens_out]


def test_gemini_answers_sse_or_a_json_array(server: ScriptedModelServer) -> None:
    declarations = [{"name": "replace"}, {"name": "write_file"}]
    request = {
        "contents": [{"role": "user", "parts": [{"text": "fix add"}]}],
        "tools": [{"functionDeclarations": declarations}],
    }
    url = f"{server.root}/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    [chunk] = _events(httpx.post(f"{url}?alt=sse", json=request, headers={"x-goog-api-key": KEY}).text)
    [part] = chunk["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == "replace" and part["functionCall"]["args"]["new_string"] == "return a + b"
    [array] = httpx.post(f"{url}?key={KEY}", json=request).json()
    assert array["usageMetadata"]["promptTokenCount"] == server.bills[-1].tokens_in


def test_aider_gets_an_edit_in_its_format_and_side_calls_a_short_answer(server: ScriptedModelServer) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    aider = {"model": "m", "messages": [{"role": "system", "content": "Use a *SEARCH/REPLACE block*."}]}
    content = httpx.post(f"{server.url}/chat/completions", json=aider, headers=headers).json()["choices"][0]["message"]
    assert "<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE" in content["content"]
    title = {"model": "m", "messages": [{"role": "system", "content": "Generate a title for this conversation."}]}
    said = httpx.post(f"{server.url}/chat/completions", json=title, headers=headers).json()["choices"][0]["message"]
    assert said["content"] == "Fix add() in calc.py"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {"Authorization": "Bearer wrong"}),
        ("/v1/responses", {}),
        ("/v1/messages", {"x-api-key": "wrong"}),
        ("/v1beta/models/g:generateContent", {"x-goog-api-key": "wrong"}),
    ],
)
def test_a_wrong_key_gets_401_that_says_not_to_retry(
    server: ScriptedModelServer, path: str, headers: dict[str, str]
) -> None:
    answer = httpx.post(f"{server.root}{path}", json={"model": "m", "messages": []}, headers=headers)
    assert answer.status_code == 401 and answer.headers["x-should-retry"] == "false"
    assert server.bills == []  # nothing billed
