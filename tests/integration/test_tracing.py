"""One prompt is one trace across gateway → session pod → AI service, with the trace id in the
logs; spans exported by the console exporter (one JSON span per line in each process's log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.stack.running import Stack
from deploy.stack.waits import eventually


def lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def spans(log: Path) -> list[dict[str, Any]]:
    return [entry for entry in lines(log) if "context" in entry]


@pytest.fixture
def traced(own_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms
    own_stack.start_redis()
    own_stack.start_model()
    own_stack.start_ai()
    own_stack.start_session()
    own_stack.start_gateway()
    return own_stack


async def test_a_prompt_is_one_trace_across_the_services(traced: Stack, session_id: str) -> None:
    ws_url = f"{traced.gateway_url.replace('http', 'ws')}/ws/{session_id}?user=t"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await ws.send_str("traced tokens=3")
        async for frame in ws:
            if frame.data == "[DONE]":
                break
    assert traced.gateway and traced.session and traced.ai
    gateway_log = traced.gateway.log_path
    session_log = traced.session.log_path
    ai_log = traced.ai.log_path
    prompt = eventually(lambda: [s for s in spans(gateway_log) if s["name"] == "ws prompt"])
    trace_id = prompt[0]["context"]["trace_id"]

    def in_trace(log: Path, name: str) -> list[dict[str, Any]]:
        return [s for s in spans(log) if s["name"] == name and s["context"]["trace_id"] == trace_id]

    send = eventually(lambda: in_trace(session_log, "/durablechat.v1.SessionService/SendPrompt"))
    generate = eventually(lambda: in_trace(ai_log, "/durablechat.v1.AiService/Generate"))
    assert send[0]["kind"] == generate[0]["kind"] == "SpanKind.SERVER"
    assert send[0]["resource"]["attributes"]["service.name"] == "session_service"
    finished = eventually(
        lambda: [e for e in lines(session_log) if e.get("msg") == "answer finished"]
    )
    assert "0x" + finished[0]["trace_id"] == trace_id
