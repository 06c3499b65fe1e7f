"""The durable-chat dev model (`python -m ai_service.dev_model`): a deterministic OpenAI
chat-completions server for local runs and tests; a malformed request gets 400 with an
OpenAI-style error body, never a partial answer.

The answer is `tok0 tok1 … tok{N-1}`: N comes from `tokens=N` in the last user message (50 when
absent, at most 100000) and stops early with finish_reason "length" at `max_completion_tokens`
or `max_tokens`. Prompt token counts are approximate (whitespace-separated words).

Continuation: when the last message is the assistant's (a partial answer, e.g. one a crashed
owner had stored), the model continues it: with k tokens in that prefix it answers
` tok{k} … tok{N-1}`, so prefix + answer is the whole answer. `max_tokens` counts new tokens.

With DEV_MODEL_ANSWERS=fresh it behaves instead like most hosted chat APIs: a trailing assistant
turn is not continued (the answer starts afresh), and no two answers are the same text: the n-th
completion this process serves (from 1) answers `g{n}tok0 g{n}tok1 …`, so text from two
generations glued together is visible (tests of ANSWER_CONTINUE=restart).

A last user message containing `format=markdown` is answered with a fixed Markdown document
instead (ai_service/dev_markdown.py: the page's rendering tests), in word chunks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ai_service import dev_markdown
from common import event_loop
from common.config import ConfigError, env_int, env_str
from common.logs import setup_logging

logger = logging.getLogger(__name__)

MODEL_ID = "durablechat-dev-model"
DEFAULT_PORT = 8090
DEFAULT_TOKEN_DELAY_MS = 5
DEFAULT_ANSWER_TOKENS = 50
MAX_ANSWER_TOKENS = 100_000
MAX_BODY_BYTES = 16 * 1024 * 1024
SHUTDOWN_TIMEOUT_S = 2.0
"""How long open streams may run on after SIGTERM; a dev model need not drain politely."""
_TOKENS_WANTED = re.compile(r"tokens=(\d+)")
_DELAY_S = web.AppKey("token_delay_s", float)
_FRESH = web.AppKey("fresh", bool)
_GENERATIONS = web.AppKey("generations", list)
"""[the number of the latest fresh completion]: one event loop serves them, so no lock."""


@dataclass(frozen=True)
class DevModelConfig:
    """The dev model's settings, from its environment."""

    bind_host: str = "127.0.0.1"
    """Interface to listen on (BIND_HOST)."""
    port: int = DEFAULT_PORT
    """HTTP port (DEV_MODEL_PORT); 0 picks a free one."""
    token_delay_ms: int = DEFAULT_TOKEN_DELAY_MS
    """Pause before each streamed token (DEV_MODEL_TOKEN_DELAY_MS); 0 streams as fast as it can."""
    log_level: str = "INFO"
    """Root log level (LOG_LEVEL)."""
    fresh: bool = False
    """DEV_MODEL_ANSWERS=fresh: every answer starts afresh (see the module docstring);
    `continue` (the default) continues a trailing assistant turn."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DevModelConfig:
        return cls(
            bind_host=env_str(environ, "BIND_HOST", "127.0.0.1"),
            port=env_int(environ, "DEV_MODEL_PORT", DEFAULT_PORT),
            token_delay_ms=env_int(environ, "DEV_MODEL_TOKEN_DELAY_MS", DEFAULT_TOKEN_DELAY_MS),
            log_level=env_str(environ, "LOG_LEVEL", "INFO"),
            fresh=_answers_mode(env_str(environ, "DEV_MODEL_ANSWERS", "continue")),
        )


def _answers_mode(value: str) -> bool:
    if value not in ("continue", "fresh"):
        raise ConfigError(f"DEV_MODEL_ANSWERS must be continue or fresh, not {value!r}")
    return value == "fresh"


class BadRequest(Exception):
    """The request cannot be answered; sent back as HTTP 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Plan:
    """What one request will be answered with, decided before the first byte is sent."""

    tokens: int
    """Index after the last token of the answer (exclusive)."""
    finish_reason: str
    prompt_tokens: int
    stream: bool
    include_usage: bool
    start: int = 0
    """Index of the first token to send: the tokens of a trailing assistant prefix are skipped."""
    generation: int = 0
    """Fresh answers: the completion's number in this process (its words are `g{n}tok{i}`)."""
    markdown: bool = False
    """The answer is dev_markdown's document (its chunks), not `tok{i}` words."""

    def chunk(self, index: int) -> str:
        """The index-th piece of this answer."""
        if self.markdown:
            return dev_markdown.chunks()[index]
        return token_text(index, self.generation)

    @property
    def new_tokens(self) -> int:
        return self.tokens - self.start


def plan_answer(body: object, generation: int = 0) -> Plan:
    """Checks a chat-completions request body; raises BadRequest naming the bad field.
    `generation` > 0: a fresh answer (a trailing assistant turn is not continued)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", "messages")
    texts = [_message_text(index, message) for index, message in enumerate(messages)]
    user_texts = [text for text, message in zip(texts, messages, strict=True) if _is_user(message)]
    found = _TOKENS_WANTED.search(user_texts[-1]) if user_texts else None
    wanted = _wanted_tokens(found.group(1)) if found else DEFAULT_ANSWER_TOKENS
    markdown = bool(user_texts) and dev_markdown.asked(user_texts[-1])
    if markdown:
        wanted = len(dev_markdown.chunks())
    limit = _limit(body)
    last = messages[-1]
    partial = last.get("role") == "assistant" and not generation
    start = min(len(texts[-1].split()), wanted) if partial else 0
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise BadRequest("stream_options must be an object", "stream_options")
    return Plan(
        tokens=wanted if limit is None else min(wanted, start + limit),
        finish_reason="length" if limit is not None and start + limit < wanted else "stop",
        prompt_tokens=sum(len(text.split()) for text in texts),
        stream=body.get("stream") is True,
        include_usage=stream_options.get("include_usage") is True,
        start=start,
        generation=generation,
        markdown=markdown,
    )


def _wanted_tokens(digits: str) -> int:
    """`tokens=N` capped at MAX_ANSWER_TOKENS; never int() a huge digit string."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_ANSWER_TOKENS)):
        return MAX_ANSWER_TOKENS
    return min(int(significant), MAX_ANSWER_TOKENS)


def _is_user(message: dict[str, Any]) -> bool:
    return message.get("role") == "user"


def _message_text(index: int, message: object) -> str:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise BadRequest(f"{param} must be an object with a string role", param)
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(part for part in parts if isinstance(part, str))
    raise BadRequest(f"{param}.content must be a string or an array of parts", param)


def _limit(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"{name} must be a positive integer", name)
        return value
    return None


def token_text(index: int, generation: int = 0) -> str:
    """The index-th chunk of every answer: "tok0", " tok1", " tok2", … (of a fresh answer,
    generation n: "g{n}tok0", " g{n}tok1", …)."""
    word = f"g{generation}tok{index}" if generation else f"tok{index}"
    return word if index == 0 else f" {word}"


def _usage(plan: Plan) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.new_tokens,
        "total_tokens": plan.prompt_tokens + plan.new_tokens,
    }


def _error(message: str, param: str | None = None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return web.json_response({"error": error}, status=400)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _error("request body is not valid JSON")
    generations = request.app[_GENERATIONS]
    try:
        plan = plan_answer(body, generations[0] + 1 if request.app[_FRESH] else 0)
    except BadRequest as exc:
        return _error(str(exc), exc.param)
    generations[0] = plan.generation
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    logger.info(
        "completion requested",
        extra={
            "completion_id": completion_id,
            "start": plan.start,
            "tokens": plan.tokens,
            "generation": plan.generation,
        },
    )
    if plan.stream:
        return await _stream(request, plan, completion_id)
    text = "".join(plan.chunk(i) for i in range(plan.start, plan.tokens))
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": plan.finish_reason,
    }
    return web.json_response(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [choice],
            "usage": _usage(plan),
        }
    )


async def _stream(request: web.Request, plan: Plan, completion_id: str) -> web.StreamResponse:
    """Writes the answer as server-sent events; a client hanging up just ends the answer."""
    created = int(time.time())
    delay_s = request.app[_DELAY_S]

    def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": choices,
            **more,
        }
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()

    def choice(delta: dict[str, str], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish_reason}]

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    written = 0
    try:
        await response.write(event(choice({"role": "assistant", "content": ""})))
        for index in range(plan.start, plan.tokens):
            if delay_s:
                await asyncio.sleep(delay_s)
            await response.write(event(choice({"content": plan.chunk(index)})))
            written += 1
        await response.write(event(choice({}, plan.finish_reason)))
        if plan.include_usage:
            await response.write(event([], usage=_usage(plan)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:
        logger.info("client hung up mid-answer", extra={"completion_id": completion_id})
    finally:
        # Tokens handed to the connection, whether or not the client read them.
        logger.info("completion ended", extra={"completion_id": completion_id, "written": written})
    return response


async def list_models(request: web.Request) -> web.Response:
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "durable-chat"}
    return web.json_response({"object": "list", "data": [model]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "model": MODEL_ID})


def create_app(token_delay_ms: int, fresh: bool = False) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_DELAY_S] = token_delay_ms / 1000
    app[_FRESH] = fresh
    app[_GENERATIONS] = [0]
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(cfg: DevModelConfig) -> None:
    """Serves until SIGTERM or SIGINT."""
    runner = web.AppRunner(
        create_app(cfg.token_delay_ms, cfg.fresh), shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.bind_host, cfg.port).start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        port = runner.addresses[0][1]
        logger.info("durable-chat dev model listening", extra={"port": port, "model": MODEL_ID})
        await stopping.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    try:
        cfg = DevModelConfig.from_env()
        loop = event_loop.chosen()
    except ConfigError as exc:
        sys.exit(f"dev_model: {exc}")
    setup_logging("dev_model", cfg.log_level)
    event_loop.run(serve(cfg), loop)


if __name__ == "__main__":
    main()
