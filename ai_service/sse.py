"""Server-sent events from raw bytes, and the few fields of a chat-completion chunk we use; pure.

Contract of `SseDecoder.feed(chunk)`: returns the `data` of every event completed by `chunk`
(an event ends at a blank line; its `data:` lines are joined with "\\n", one space after the
colon dropped; comments and other fields are skipped; lines may end in "\\n" or "\\r\\n"); bytes
of an unfinished line or event wait for the next chunk. `ChunkFields.of(data)` reads one
`chat.completion.chunk`: choice 0's text and finish reason, the usage and the model, without
building an object per field; anything not shaped like a chunk is a `MalformedChunk`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DONE = b"[DONE]"
"""The data of the event that ends an OpenAI stream."""


class MalformedChunk(ValueError):
    """An event's data is not a chat-completion chunk."""


class SseDecoder:
    """Keeps the unfinished line and event between chunks of one stream."""

    __slots__ = ("_data", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._partial + chunk).split(b"\n") if self._partial else chunk.split(b"\n")
        self._partial = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events


@dataclass(frozen=True, slots=True)
class ChunkFields:
    """What one chunk says: choice 0's `text` (maybe "") and `finish_reason` (None until the
    last), the `usage` counts when present (prompt, completion), and the answering `model`."""

    text: str
    finish_reason: str | None
    usage: tuple[int, int] | None
    model: str
    error: str | None

    @classmethod
    def of(cls, data: bytes) -> ChunkFields:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise MalformedChunk(f"not JSON: {exc}") from exc
        if not isinstance(chunk, dict):
            raise MalformedChunk("a chunk must be a JSON object")
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            text = message if isinstance(message, str) and message else "an error in the stream"
            return cls("", None, None, "", text)
        text, reason = _first_choice(chunk.get("choices"))
        return cls(text, reason, _usage(chunk.get("usage")), _str(chunk.get("model")), None)


def _first_choice(choices: object) -> tuple[str, str | None]:
    if choices is None:
        return "", None
    if not isinstance(choices, list):
        raise MalformedChunk("choices must be a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise MalformedChunk("a choice must be an object")
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise MalformedChunk("a choice's delta must be an object")
        text = delta.get("content") or ""
        reason = choice.get("finish_reason")
        if not isinstance(text, str) or not (reason is None or isinstance(reason, str)):
            raise MalformedChunk("content and finish_reason must be strings")
        return text, reason
    return "", None


def _usage(usage: object) -> tuple[int, int] | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise MalformedChunk("usage must be an object")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        raise MalformedChunk("usage must hold integer prompt_tokens and completion_tokens")
    return prompt, completion


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
