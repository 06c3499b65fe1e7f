"""Every service's Prometheus endpoint reports what really happened: real processes, scraped
over HTTP, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import urllib.request

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack.ports import free_port
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import session_pb2
from tests.support.grpc_client import SessionClient, events_until

SEND_PROMPT = "/durablechat.v1.SessionService/SendPrompt"
GET_SESSION = "/durablechat.v1.SessionService/GetSession"
SUBSCRIBE = "/durablechat.v1.SessionService/Subscribe"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Samples by (name, labels)."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metered(own_stack: Stack) -> tuple[Stack, dict[str, str]]:
    ports = {"session": free_port(), "ai": free_port()}
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=1)
    own_stack.start_ai(METRICS_PORT=str(ports["ai"]))
    own_stack.start_session(METRICS_PORT=str(ports["session"]))
    own_stack.start_gateway()
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    urls["gateway"] = f"{own_stack.gateway_url}/metrics"
    return own_stack, urls


async def test_calls_answers_and_sockets_are_counted(metered, session_id) -> None:
    stack, urls = metered
    client = SessionClient(stack.session_addr)
    try:
        stream = client.subscribe(session_id)
        await events_until(stream, "caught_up")
        await client.prompt(session_id, "count me tokens=7")
        await events_until(stream, "answer_ended")
        stream.cancel()
        with pytest.raises(grpc.aio.AioRpcError):
            await client.stub.GetSession(session_pb2.GetSessionRequest(session_id="bad id!"))
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{stack.gateway_url.replace('http', 'ws')}/ws/{session_id}") as ws,
        ):
            async with http.get(f"{stack.gateway_url}/api/chat/session/{session_id}") as reply:
                assert reply.status == 200
            gateway = scrape(urls["gateway"])
            await ws.close()
        session = scrape(urls["session"])
        ai = scrape(urls["ai"])
    finally:
        await client.close()

    assert value(session, "dc_grpc_requests_total", method=SEND_PROMPT, code="OK") == 1
    assert value(session, "dc_grpc_requests_total", method=GET_SESSION, code="INVALID_ARGUMENT")
    assert value(session, "dc_grpc_latency_seconds_count", method=SEND_PROMPT) == 1
    assert value(session, "dc_answers_total", status="completed") == 1
    assert value(session, "dc_answer_completion_tokens_total") == 7
    assert value(session, "dc_answer_first_batch_seconds_count") == 1
    assert value(session, "dc_active_sessions") == 1
    assert value(session, "dc_session_activations_total") == 1
    assert value(ai, "dc_ai_chunks_total") == 7
    assert value(ai, "dc_ai_first_chunk_seconds_count") == 1
    assert value(gateway, "dc_gateway_sockets") == 1
    assert value(gateway, "dc_gateway_thread_hubs") == 1
    # The route label is the pattern, never the raw path (ids would make series unbounded).
    route = "/api/chat/session/{session_id}"
    assert value(gateway, "dc_gateway_http_requests_total", route=route, method="GET", status="200")
    assert not any("bad id" in str(labels) for _, labels in session)
    # Subscribes the callers cancelled (this test's, the gateway hub's when its socket closed)
    # count as CANCELLED, not as server errors.
    eventually(
        lambda: (
            value(
                scrape(urls["session"]),
                "dc_grpc_requests_total",
                method=SUBSCRIBE,
                code="CANCELLED",
            )
            >= 1
        )
    )
    assert not value(
        scrape(urls["session"]), "dc_grpc_requests_total", method=SUBSCRIBE, code="UNKNOWN"
    )
