"""Server-sent events through the gateway: the gRPC stream's events with resumable ids."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from tests.support.ws_frames import expected_answer


async def sse_events(reply: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Parsed events: {"id", "event", "data"} (comments and `retry:` skipped)."""
    fields: dict[str, Any] = {}
    async for raw in reply.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def events_url(stack: Stack, sid: str, after: int | None = None) -> str:
    query = f"?after={after}" if after is not None else ""
    return f"{stack.gateway_url}/api/chat/session/{sid}/events{query}"


async def test_resume_with_last_event_id_mid_answer_has_no_gap_and_no_duplicate(
    slow_stack: Stack,
    session_id: str,
) -> None:
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(events_url(slow_stack, session_id, after=0)) as reply:
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            async with http.post(
                f"{slow_stack.gateway_url}/api/chat/session/{session_id}/messages",
                json={"role": "user", "content": "warm up"},
            ):
                pass
            async with http.ws_connect(
                f"{slow_stack.gateway_url.replace('http', 'ws')}/ws/{session_id}?user=a"
            ) as ws:
                await ws.send_str("a long one tokens=60")
                async for event in sse_events(reply):
                    seen.append(event)
                    if sum(e["event"] == "answer_delta" for e in seen) == 2:
                        break  # the client drops mid-answer
        last_id = seen[-1]["id"]
        headers = {"Last-Event-ID": last_id}
        async with http.get(events_url(slow_stack, session_id), headers=headers) as reply:
            async for event in sse_events(reply):
                seen.append(event)
                if event["event"] == "answer_ended":
                    break
    deltas = [e for e in seen if e["event"] == "answer_delta"]
    assert [d["data"].get("offset", 0) for d in deltas] == list(range(len(deltas)))
    text = "".join(d["data"]["answerDelta"]["text"] for d in deltas)
    assert text == expected_answer(60) == seen[-1]["data"]["answerEnded"]["message"]["content"]
    kinds = [e["event"] for e in seen if e["event"] != "answer_delta"]
    assert kinds.count("answer_started") == 1 and kinds.count("message_appended") == 2
    # Every event but CaughtUp (a marker stating the position again) moves the position on.
    ids = [e["id"] for e in seen if e["event"] != "caught_up"]
    assert len(ids) == len(set(ids)), "an event was sent twice"


@pytest.mark.parametrize(
    ("headers", "query"), [({"Last-Event-ID": "nonsense"}, ""), ({}, "?after=-1")]
)
async def test_a_malformed_cursor_is_a_400(
    slow_stack: Stack,
    session_id: str,
    headers: dict[str, str],
    query: str,
) -> None:
    url = f"{slow_stack.gateway_url}/api/chat/session/{session_id}/events{query}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as reply:
        assert reply.status == 400
        assert (await reply.json())["error"]["code"] == "INVALID_ARGUMENT"


async def test_a_bad_session_id_is_a_400_before_the_stream_starts(
    slow_stack: Stack,
) -> None:
    url = f"{slow_stack.gateway_url}/api/chat/session/bad%20id/events"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        assert reply.status == 400


async def test_a_client_leaving_an_idle_stream_is_noticed_at_the_next_heartbeat(
    own_stack: Stack, session_id: str
) -> None:
    own_stack.start_redis()
    own_stack.start_session()
    own_stack.start_gateway(SSE_HEARTBEAT_MS="100")
    url = events_url(own_stack, session_id, after=0)
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        async for event in sse_events(reply):
            assert event["event"] == "caught_up"
            break  # leave the idle stream
    assert own_stack.gateway is not None
    log = own_stack.gateway.log_path
    eventually(lambda: "event stream left by the client" in log.read_text())
    assert "unhandled error" not in log.read_text()
