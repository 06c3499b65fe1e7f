"""The seed-000 WebSocket of the gateway against the real stack: prompts, frames, history."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.ws_frames import (
    FRAME_TIMEOUT_S,
    answer_text,
    frames_through_done,
    history,
    next_frame,
    ws_url,
)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as client:
        yield client


async def test_prompt_streams_loading_tokens_done_to_every_socket_of_the_thread(
    http, stack, session_id
):
    async with (
        http.ws_connect(ws_url(stack, session_id, "ann")) as ann,
        http.ws_connect(ws_url(stack, session_id, "bob")) as bob,
    ):
        await ann.send_str("hello tokens=5")
        for ws in (ann, bob):
            assert answer_text(await frames_through_done(ws)) == "tok0 tok1 tok2 tok3 tok4"


async def test_history_after_reconnect_lists_user_and_assistant_messages(http, stack, session_id):
    async with http.ws_connect(ws_url(stack, session_id, "ann")) as ws:
        await ws.send_str("hello tokens=3")
        await frames_through_done(ws)
    async with http.ws_connect(ws_url(stack, session_id, "bob")) as ws:
        entries = await history(ws)
    assert [{k: e[k] for k in ("role", "content", "user")} for e in entries] == [
        {"role": "user", "content": "hello tokens=3", "user": "ann"},
        {"role": "assistant", "content": "tok0 tok1 tok2", "user": ""},
    ]
    assert all(set(e) == {"role", "content", "user", "ts"} for e in entries)
    assert 1_600_000_000_000 < entries[0]["ts"] <= entries[1]["ts"]


async def test_a_backslash_sends_a_command_word_as_a_prompt(http, stack, session_id):
    async with http.ws_connect(ws_url(stack, session_id, "ann")) as ws:
        await ws.send_str("\\(GET_HISTORY)")  # the words as a prompt, not the command
        frames = await frames_through_done(ws)
        entries = await history(ws)
    assert frames[0] == "[LOADING]"  # answered like any prompt (50 tokens by default)
    assert answer_text(frames) == " ".join(f"tok{i}" for i in range(50))
    assert entries[0]["content"] == "(GET_HISTORY)"


async def test_history_of_a_new_thread_is_an_empty_list(http, stack, session_id):
    async with http.ws_connect(ws_url(stack, session_id)) as ws:
        assert await history(ws) == []


async def test_prompts_sent_back_to_back_are_answered_one_block_after_the_other(
    http, stack, session_id
):
    async with http.ws_connect(ws_url(stack, session_id)) as ws:
        await ws.send_str("first tokens=3")
        await ws.send_str("second tokens=4")
        first = answer_text(await frames_through_done(ws))
        second = answer_text(await frames_through_done(ws))
        entries = await history(ws)
    assert (first, second) == ("tok0 tok1 tok2", "tok0 tok1 tok2 tok3")
    assert [e["content"] for e in entries if e["role"] == "assistant"] == [first, second]


async def test_prompt_error_goes_only_to_the_sending_socket(http, stack, session_id):
    async with (
        http.ws_connect(ws_url(stack, session_id, "ann")) as ann,
        http.ws_connect(ws_url(stack, session_id, "bob")) as bob,
    ):
        await ann.send_str("   ")
        assert (await next_frame(ann)).startswith("[ERROR] ")
        await ann.send_str("valid tokens=2")
        # bob's first frame is this answer's: the error never reached him.
        assert answer_text(await frames_through_done(bob)) == "tok0 tok1"
        assert answer_text(await frames_through_done(ann)) == "tok0 tok1"
        assert [e["content"] for e in await history(ann)] == ["valid tokens=2", "tok0 tok1"]


async def test_binary_frame_is_an_error_and_stores_nothing(http, stack, session_id):
    async with http.ws_connect(ws_url(stack, session_id)) as ws:
        await ws.send_bytes(b"hello tokens=2")
        assert (await next_frame(ws)).startswith("[ERROR] ")
        assert await history(ws) == []


async def test_frame_over_the_size_limit_closes_1009_and_stores_nothing(http, stack, session_id):
    async with http.ws_connect(ws_url(stack, session_id), max_msg_size=0) as ws:
        await ws.send_str("x" * (1024 * 1024 + 1))
        message = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    async with http.ws_connect(ws_url(stack, session_id)) as ws:
        assert await history(ws) == []


@pytest.mark.parametrize(
    "thread_id",
    [pytest.param("bad%20id!", id="space-and-bang"), pytest.param("x" * 129, id="too-long")],
)
async def test_invalid_thread_id_is_refused_with_400_before_the_upgrade(http, stack, thread_id):
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(ws_url(stack, thread_id))
    assert caught.value.status == 400


async def test_a_user_name_over_the_limit_is_refused_with_400_before_the_upgrade(
    http, stack, session_id
):
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(ws_url(stack, session_id, "u" * 129))
    assert caught.value.status == 400


async def test_plain_get_of_a_socket_url_is_400_not_an_upgrade(http, stack, session_id):
    async with http.get(ws_url(stack, session_id).replace("ws://", "http://")) as reply:
        assert reply.status == 400
        assert (await reply.json())["error"]["code"] == "INVALID_ARGUMENT"
