"""Session events as plain values, and the seed-000 text frames one thread's sockets see; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

LOADING = "[LOADING]"
DONE = "[DONE]"
RESTART = "[RESTART]"
"""The answer being shown starts again from nothing: clear its text, then show the frames
that follow (sent when the model answered afresh after its owner died, ANSWER_CONTINUE=restart,
or when the stored end is not what the socket was shown)."""
ERROR_PREFIX = "[ERROR] "
FAILED_STATUSES = frozenset({"FAILED", "INTERRUPTED", "CANCELLED"})
"""Answer statuses whose end is reported as an `[ERROR]` frame before `[DONE]`."""
ESCAPE = "\\"


def text_frame(text: str) -> str:
    """Answer text as a frame no client can take for a control frame. Text that is exactly
    `[LOADING]`, `[DONE]` or `[RESTART]`, or starts with `[ERROR] ` or with a backslash, is sent
    with one backslash in front; clients drop one leading backslash from any other frame. Text
    that starts otherwise is sent as it is, so the seed protocol is unchanged for normal text."""
    if text in (LOADING, DONE, RESTART) or text.startswith((ERROR_PREFIX, ESCAPE)):
        return ESCAPE + text
    return text


def prompt_text(frame: str) -> str:
    """A client frame that is not a command, as prompt text: a leading backslash is an escape
    (`\\(GET_HISTORY)` sends the words "(GET_HISTORY)" as a prompt) and is dropped."""
    return frame[1:] if frame.startswith(ESCAPE) else frame


@dataclass(frozen=True)
class Cursor:
    """Where a subscriber stands: the last log seq seen, and the open answer's batches seen."""

    seq: int
    offset: int


@dataclass(frozen=True)
class Logged:
    """A log event with no frame of its own (a message appended, the state changed)."""

    seq: int


@dataclass(frozen=True)
class AnswerStarted:
    seq: int


@dataclass(frozen=True)
class AnswerDelta:
    """Batch `offset` of the answer started at log position `answer_seq`."""

    answer_seq: int
    offset: int
    text: str


@dataclass(frozen=True)
class AnswerEnded:
    """The stored answer: its whole `content`, its status name and, when it failed, why."""

    seq: int
    answer_seq: int
    content: str
    status: str
    error: str


@dataclass(frozen=True)
class AnswerRestarted:
    """The answer started at `answer_seq` starts again: its batches count from 0 again."""

    seq: int
    answer_seq: int


@dataclass(frozen=True)
class CaughtUp:
    seq: int
    offset: int


Event = Logged | AnswerStarted | AnswerDelta | AnswerEnded | AnswerRestarted | CaughtUp


def error_frame(message: str) -> str:
    return f"{ERROR_PREFIX}{message}"


@dataclass
class _Answer:
    seq: int
    texts: list[str] = field(default_factory=list)
    next_offset: int = 0
    ended: AnswerEnded | None = None


class ThreadView:
    """What one thread's sockets have been shown, and the resume cursor of its upstream stream.

    At most one answer is *shown* (its `[LOADING]` sent, its `[DONE]` not yet); answers started
    meanwhile wait in seq order, their deltas buffered, until the shown one ends. Log events are
    applied once (by seq) and delta batches once (by offset), so a replay after a resubscribe
    produces no frame twice. An answer that restarts drops its text (`[RESTART]` if shown):
    the text frames since a socket's last `[LOADING]` or `[RESTART]` are always the beginning
    of one generation, and at `[DONE]` exactly the stored answer.
    """

    def __init__(self) -> None:
        self.cursor: Cursor | None = None
        """None until the first CaughtUp; then the position to resubscribe from."""
        self._last_seq = 0
        self._shown: _Answer | None = None
        self._waiting: dict[int, _Answer] = {}

    def snapshot(self) -> list[str]:
        """The frames a socket joining now needs to follow the live frames seamlessly."""
        if self._shown is None:
            return []
        text = "".join(self._shown.texts)
        return [LOADING, text_frame(text)] if text else [LOADING]

    def apply(self, event: Event) -> list[str]:
        """Takes one event in stream order; returns the frames every socket must get for it."""
        if isinstance(event, CaughtUp):
            self.cursor = Cursor(event.seq, event.offset)
            self._last_seq = max(self._last_seq, event.seq)
            return []
        if isinstance(event, AnswerDelta):
            return self._delta(event)
        if event.seq <= self._last_seq:
            return []
        self._last_seq = event.seq
        if self.cursor is not None:
            # Only an answer's end or restart resets the offset: it counts the streaming
            # answer's batches, and an answer queued behind it starting changes nothing about
            # that (resume.md).
            closes = isinstance(event, AnswerEnded | AnswerRestarted)
            self.cursor = Cursor(event.seq, 0 if closes else self.cursor.offset)
        if isinstance(event, AnswerStarted):
            return self._start(_Answer(event.seq))
        if isinstance(event, AnswerEnded):
            return self._end(event)
        if isinstance(event, AnswerRestarted):
            return self._restart(event)
        return []

    def _restart(self, event: AnswerRestarted) -> list[str]:
        answer = self._find(event.answer_seq)
        if answer is None:
            return []
        answer.texts, answer.next_offset = [], 0
        return [RESTART] if answer is self._shown else []

    def _start(self, answer: _Answer) -> list[str]:
        if self._shown is not None:
            self._waiting[answer.seq] = answer
            return []
        self._shown = answer
        return [LOADING]

    def _delta(self, event: AnswerDelta) -> list[str]:
        if self.cursor is not None:
            self.cursor = Cursor(self.cursor.seq, event.offset + 1)
        answer = self._find(event.answer_seq)
        if answer is None or event.offset < answer.next_offset or not event.text:
            return []
        answer.next_offset = event.offset + 1
        answer.texts.append(event.text)
        return [text_frame(event.text)] if answer is self._shown else []

    def _end(self, event: AnswerEnded) -> list[str]:
        answer = self._find(event.answer_seq)
        frames: list[str] = []
        if answer is None:
            # Its start came before this stream began; show it whole rather than not at all.
            answer = _Answer(event.answer_seq)
            frames = self._start(answer)
        answer.ended = event
        if answer is not self._shown:
            return frames
        return frames + self._finish(answer) + self._promote()

    def _finish(self, answer: _Answer) -> list[str]:
        ended = answer.ended
        assert ended is not None
        self._shown = None
        frames: list[str] = []
        sent = "".join(answer.texts)
        if not ended.content.startswith(sent):  # never leave other text shown than is stored
            frames.append(RESTART)
            sent = ""
        if len(ended.content) > len(sent):
            frames.append(text_frame(ended.content[len(sent) :]))
        if ended.status in FAILED_STATUSES:
            frames.append(error_frame(ended.error or f"answer {ended.status.lower()}"))
        frames.append(DONE)
        return frames

    def _promote(self) -> list[str]:
        """Shows the waiting answers in seq order until one is still streaming."""
        frames: list[str] = []
        while self._shown is None and self._waiting:
            answer = self._waiting.pop(min(self._waiting))
            self._shown = answer
            frames.append(LOADING)
            frames.extend(text_frame(t) for t in answer.texts)
            if answer.ended is not None:
                frames.extend(self._finish(answer))
        return frames

    def _find(self, answer_seq: int) -> _Answer | None:
        if self._shown is not None and self._shown.seq == answer_seq:
            return self._shown
        return self._waiting.get(answer_seq)
