"""Gateway sockets while answers stream slowly: late joiners, queued answers, owner restarts."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from deploy.stack.running import Stack
from deploy.stack.spec import start
from deploy.stack.waits import async_eventually
from tests.support.generations import KINDS, generation, one_generation
from tests.support.stacks import SLOW
from tests.support.ws_frames import (
    answer_text,
    expected_answer,
    frames_through_done,
    history,
    next_frame,
    ws_url,
)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as client:
        yield client


async def test_socket_joining_mid_answer_gets_loading_and_the_whole_answer(
    http, slow_stack, session_id
):
    async with http.ws_connect(ws_url(slow_stack, session_id, "ann")) as ann:
        await ann.send_str("hello tokens=80")
        assert await next_frame(ann) == "[LOADING]"
        seen = [await next_frame(ann)]
        assert not seen[0].startswith("[")
        async with http.ws_connect(ws_url(slow_stack, session_id, "bob")) as bob:
            late = await frames_through_done(bob)
            seen += await frames_through_done(ann)
    assert answer_text(["[LOADING]", *seen]) == expected_answer(80)
    assert answer_text(late) == expected_answer(80)


async def test_prompt_sent_while_an_answer_streams_shows_loading_after_its_done(
    http, slow_stack, session_id
):
    async with (
        http.ws_connect(ws_url(slow_stack, session_id, "ann")) as ann,
        http.ws_connect(ws_url(slow_stack, session_id, "bob")) as bob,
    ):
        await ann.send_str("first tokens=30")
        assert await next_frame(ann) == "[LOADING]"
        await bob.send_str("second tokens=5")
        for ws in (ann, bob):
            first = await frames_through_done(ws)
            if ws is ann:
                first = ["[LOADING]", *first]
            assert answer_text(first) == expected_answer(30)
            assert answer_text(await frames_through_done(ws)) == expected_answer(5)


async def test_sockets_stay_connected_through_a_session_service_restart(
    http, own_stack, session_id
):
    stack = start(own_stack, SLOW)
    async with http.ws_connect(ws_url(stack, session_id, "ann")) as ws:
        await ws.send_str("before tokens=3")
        assert answer_text(await frames_through_done(ws)) == expected_answer(3)
        assert stack.session is not None
        stack.session.stop()
        stack.start_session()

        async def gateway_healthy() -> bool:
            async with http.get(f"{stack.gateway_url}/healthz") as reply:
                return bool(reply.status == 200)

        await async_eventually(gateway_healthy, 15)
        await ws.send_str("after tokens=4")
        # Exactly one block: the hub resubscribed from its cursor, missing and repeating nothing.
        assert answer_text(await frames_through_done(ws)) == expected_answer(4)
        contents = [e["content"] for e in await history(ws)]
    assert contents == ["before tokens=3", expected_answer(3), "after tokens=4", expected_answer(4)]


async def test_answer_in_progress_finishes_through_a_graceful_restart(http, own_stack, session_id):
    stack = start(own_stack, SLOW)
    async with http.ws_connect(ws_url(stack, session_id, "ann")) as ws:
        await ws.send_str("long tokens=100")
        frames = [await next_frame(ws), await next_frame(ws)]
        assert stack.session is not None
        stack.session.stop()  # SIGTERM: the pod drains, letting the answer finish first
        stack.start_session()
        frames += await frames_through_done(ws)
    assert frames[0] == "[LOADING]" and frames.count("[LOADING]") == 1
    assert "".join(frames[1:-1]) == expected_answer(100)


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
async def test_answer_cut_by_a_session_service_crash_is_continued_whole_on_the_socket(
    http, own_stack, session_id, model_env, ai_env
):
    stack = start(own_stack, dataclasses.replace(SLOW, model_env=model_env, ai_env=ai_env))
    async with http.ws_connect(ws_url(stack, session_id, "ann")) as ws:
        await ws.send_str("long tokens=200")
        assert await next_frame(ws) == "[LOADING]"
        frames = ["[LOADING]", await next_frame(ws)]
        assert stack.session is not None
        stack.session.kill9()
        stack.start_session()
        frames += await frames_through_done(ws)
        stored = [e["content"] for e in await history(ws) if e["role"] == "assistant"]
        # The same socket goes on working with the restarted owner.
        await ws.send_str("again tokens=2")
        again = generation(3, 2) if ai_env else expected_answer(2)
        assert answer_text(await frames_through_done(ws)) == again
    assert frames.count("[LOADING]") == 1
    assert not any(f.startswith("[ERROR]") for f in frames), frames
    if ai_env:  # the model answered afresh: the socket was told to replace the text
        restart = frames.index("[RESTART]")
        assert frames.count("[RESTART]") == 1 and one_generation("".join(frames[1:restart]))
        frames = ["[LOADING]", *frames[restart + 1 :]]
    full = generation(2, 200) if ai_env else expected_answer(200)
    assert "".join(frames[1:-1]) == full == stored[-1]


@pytest.fixture
def core_stack(own_stack: Stack) -> Stack:
    """Redis, session service and gateway only: enough for everything but answers."""
    own_stack.start_redis()
    own_stack.start_session()
    own_stack.start_gateway()
    return own_stack


async def test_sigterm_closes_sockets_going_away_and_exits_cleanly(http, core_stack, session_id):
    async with http.ws_connect(ws_url(core_stack, session_id)) as ws:
        assert core_stack.gateway is not None and core_stack.gateway.proc is not None
        core_stack.gateway.stop()
        message = await ws.receive(timeout=15)
        assert (message.type, message.data) == (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSCloseCode.GOING_AWAY,
        )
    assert core_stack.gateway.proc.returncode == 0


async def test_session_service_down_is_503_for_health_and_new_sockets(http, core_stack, session_id):
    assert core_stack.session is not None
    core_stack.session.stop()
    async with http.get(f"{core_stack.gateway_url}/healthz") as reply:
        assert reply.status == 503
        assert (await reply.json())["error"]["code"] == "UNAVAILABLE"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(ws_url(core_stack, session_id))
    assert caught.value.status == 503
    async with http.get(f"{core_stack.gateway_url}/api/chat/session/{session_id}") as reply:
        assert reply.status == 503
        assert (await reply.json())["error"]["code"] == "UNAVAILABLE"


async def test_cancel_frame_stops_the_answer_on_every_socket_of_the_thread(
    http, slow_stack, session_id
):
    url = ws_url(slow_stack, session_id, "ann")
    async with http.ws_connect(url) as first, http.ws_connect(url) as second:
        await first.send_str("long tokens=500")
        assert await next_frame(first) == "[LOADING]"
        await next_frame(first)
        await second.send_str("(CANCEL)")
        frames = [await frames_through_done(ws) for ws in (first, second)]
        stored = [e for e in await history(first) if e["role"] == "assistant"]
    for shown in frames:
        assert shown[-2:] == ["[ERROR] answer cancelled", "[DONE]"], shown
    shown_second = "".join(f for f in frames[1] if not f.startswith("["))
    assert stored[-1]["content"].endswith(shown_second)
    assert len(stored[-1]["content"].split()) < 500


async def test_rest_cancel_answers_cancelled_and_400_when_nothing_streams(
    http, slow_stack, session_id
):
    base = f"{slow_stack.gateway_url}/api/chat/session/{session_id}"
    async with http.post(f"{base}/cancel") as reply:
        assert reply.status == 400
        assert (await reply.json())["error"]["code"] == "INVALID_ARGUMENT"
    async with http.ws_connect(ws_url(slow_stack, session_id, "ann")) as ws:
        await ws.send_str("long tokens=500")
        assert await next_frame(ws) == "[LOADING]"
        async with http.post(f"{base}/cancel") as reply:
            assert (reply.status, await reply.json()) == (200, {"cancelled": True})
        assert (await frames_through_done(ws))[-2] == "[ERROR] answer cancelled"
