"""Envoy in front of the real services: gRPC-web (buf curl, the strictest client), CORS, the
WebSocket and plain HTTP through one port; and the committed config validates."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from deploy import envoy_config
from deploy.stack.envoy import ENVOY
from deploy.stack.processes import ROOT
from tests.support.edge import Edge, running_edge

BUF = str(ROOT / "node_modules" / ".bin" / "buf")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_committed_config_validates() -> None:
    done = validate(envoy_config.TEMPLATE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("envoy")) as running:
        yield running


def buf_curl(
    edge: Edge, method: str, body: dict[str, object], *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            BUF,
            "curl",
            "--protocol",
            "grpcweb",
            "--schema",
            "protos",
            "--emit-defaults",
            *extra,
            "-d",
            json.dumps(body),
            f"{edge.url}/durablechat.v1.SessionService/{method}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_grpc_web_unary_and_stream_through_envoy(edge: Edge) -> None:
    sent = buf_curl(
        edge, "SendPrompt", {"session_id": "edge-1", "content": "hi tokens=4", "user": "w"}
    )
    assert sent.returncode == 0, sent.stderr
    answer_seq = json.loads(sent.stdout)["answerSeq"]
    # Subscribe never ends on its own: a 3 s timeout ends it after the replay.
    streamed = buf_curl(
        edge, "Subscribe", {"session_id": "edge-1", "after_seq": 0}, "--timeout", "3s"
    )
    assert "deadline_exceeded" in streamed.stderr.lower(), streamed.stderr
    events = [json.loads(doc) for doc in streamed.stdout.replace("}\n{", "}\x00{").split("\x00")]
    ended = [e["event"]["answerEnded"] for e in events if "answerEnded" in e["event"]]
    assert ended[0]["message"]["content"] == "tok0 tok1 tok2 tok3"
    assert ended[0]["message"]["answerSeq"] == answer_seq


def test_a_bad_request_gets_its_grpc_status_through_envoy(edge: Edge) -> None:
    done = buf_curl(edge, "GetSession", {"session_id": "bad id!"})
    assert done.returncode != 0
    assert "invalid_argument" in done.stderr.lower()


def test_cors_preflight_for_grpc_web_only_from_configured_origins(edge: Edge) -> None:
    request = urllib.request.Request(
        f"{edge.url}/durablechat.v1.SessionService/GetSession",
        method="OPTIONS",
        headers={
            "Origin": "http://example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-grpc-web",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.headers["Access-Control-Allow-Origin"] == "http://example.test"
        assert "x-grpc-web" in reply.headers["Access-Control-Allow-Headers"]
    request.headers["Origin"] = "http://evil.test"  # not configured: no CORS grant
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert "Access-Control-Allow-Origin" not in reply.headers


async def test_websocket_and_http_through_envoy(edge: Edge) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{edge.url}/healthz") as reply:
            assert reply.status == 200
        async with http.ws_connect(f"{edge.url.replace('http', 'ws')}/ws/edge-ws?user=a") as ws:
            await ws.send_str("hello tokens=3")
            frames = []
            async for frame in ws:
                frames.append(frame.data)
                if frame.data == "[DONE]":
                    break
    assert frames[0] == "[LOADING]" and frames[-1] == "[DONE]"
    assert "".join(frames[1:-1]) == "tok0 tok1 tok2"
