"""clients/python's ChatSessionClient against the real session service: seed 003's operations,
a streamed prompt, and a prompt that survives the owner's restart mid-answer."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from deploy.stack.running import Stack
from durablechat_client import RESTART, ChatSessionClient
from tests.support.generations import KINDS, Shown, generation


def tokens(n: int) -> str:
    return " ".join(f"tok{i}" for i in range(n))


async def test_state_helpers_messages_and_a_streamed_prompt(core: Stack, session_id: str) -> None:
    async with ChatSessionClient(core.session_addr, session_id) as chat:
        await chat.set_pending_match({"tutor": {"id": 7}, "score": 0.9})
        await chat.set_booking_info({"studentName": "John", "step": "name-email"})
        await chat.set_search_criteria({"skill": "Python", "day": "Monday"})
        assert await chat.get_pending_match() == {"tutor": {"id": 7}, "score": 0.9}
        assert await chat.get_booking_info() == {"studentName": "John", "step": "name-email"}
        await chat.set_booking_info(None)  # cleared, the other keys untouched
        assert await chat.get_booking_info() is None
        assert await chat.get_search_criteria() == {"skill": "Python", "day": "Monday"}

        seq = await chat.add_message("user", "I need help with Python", client_message_id="m1")
        again = await chat.add_message("user", "I need help with Python", client_message_id="m1")
        assert again == seq  # idempotent
        streamed = [text async for text in chat.prompt("go tokens=30", user="john")]
        assert "".join(t for t in streamed if isinstance(t, str)) == tokens(30)
        assert RESTART not in streamed
        state = await chat.get_state()
        assert [(m["role"], m["content"]) for m in state["messages"]] == [
            ("user", "I need help with Python"),
            ("user", "go tokens=30"),
            ("assistant", tokens(30)),
        ]
        assert state["pendingMatch"]["tutor"]["id"] == 7 and state["createdAt"] > 0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await chat.update_state({"x": 1}, expected_version=1)
        assert err.value.code() == grpc.StatusCode.ABORTED


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
async def test_a_prompt_resumes_across_an_owner_restart(
    own_stack: Stack, session_id: str, model_env: dict[str, str], ai_env: dict[str, str]
) -> None:
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=5, **model_env)
    own_stack.start_ai(**ai_env)
    own_stack.start_session()
    async with ChatSessionClient(own_stack.session_addr, session_id, timeout_s=20) as chat:
        shown = Shown()
        midway = asyncio.Event()

        async def follow() -> None:
            async for item in chat.prompt("long tokens=400"):
                if item is RESTART:
                    shown.replace()  # the answer starts again: drop what came before
                else:
                    assert isinstance(item, str)
                    shown.append(item)
                if len(shown.text.split()) >= 50:
                    midway.set()

        task = asyncio.create_task(follow())
        await asyncio.wait_for(midway.wait(), 30)
        assert own_stack.session is not None
        own_stack.session.kill9()
        await asyncio.to_thread(own_stack.start_session)  # the same pod comes back
        await asyncio.wait_for(task, 60)
        answer = (await chat.get_messages())[-1]
    full = generation(2, 400) if ai_env else tokens(400)
    assert shown.text == full == answer["content"]  # no gap, no duplicate
    assert not shown.glued, "the client showed two generations glued"
    assert shown.replaced == (1 if ai_env else 0)
