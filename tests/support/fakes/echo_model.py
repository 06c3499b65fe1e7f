"""An OpenAI-protocol model that answers every prompt with the prompt's own text, in one chunk.

The fuzz battery's model: what an attacker types comes back as the answer, so hostile text
(control-frame lookalikes, backslashes, huge or odd text) reaches every answer path, as a
prompt-injected real model's output would.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.fakes.openai_server import FakeOpenAI, _Fault, chunk_writer


class EchoModel(FakeOpenAI):
    """FakeOpenAI whose answer is the last user message's content, streamed as one chunk."""

    async def _write_answer(
        self, request: web.Request, response: web.StreamResponse, fault: _Fault
    ) -> None:
        messages: list[dict[str, Any]] = (await request.json()).get("messages") or []
        prompts = [m for m in messages if m.get("role") == "user"]
        text = str(prompts[-1].get("content") or "") if prompts else ""
        event = chunk_writer()
        await response.write(event({"role": "assistant", "content": ""}))
        await response.write(event({"content": text}))
        await response.write(event({}, "stop"))
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        await response.write(event({}, usage=usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
