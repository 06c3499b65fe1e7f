"""The in-memory image of one session: its log, messages, state, open answers, subscribers.

Pure: no I/O and no gRPC. The owning actor applies only events Redis has acknowledged, in seq
order, so this image always equals a prefix-complete replay of the stored log.

Windowed images (log/snapshot.py): an image restored from a snapshot holds the derived views
(state, access, thread fields, counters, tree, feedback, open answers) of the whole log but the
events and messages only after `base_seq`. What reads older events or messages (`events_after`
below the base, `message_at` of an older message, exports) must first `complete` the image with
the log's first `base_seq` entries, or be given what it needs of them (`replay`'s `older`); the
accessors below raise NotLoaded rather than answer from a partial list. The tree knows every
message's seq, so a history page's seqs come from memory (`page_seqs`) and its older messages
from Redis (the actor's `messages_at`).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from session_service.errors import InvalidArgument
from session_service.log.events import (
    AccessChanged,
    AnswerDelta,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    BranchSelected,
    CaughtUp,
    Event,
    FeedbackChanged,
    LogEvent,
    Message,
    MessageAppended,
    MessageEvent,
    StateChanged,
    ThreadChanged,
    decode,
)
from session_service.log.merge_patch import apply_patch, dump_json, parse_json
from session_service.log.subscriber import Subscriber
from session_service.log.tree import MessageTree


@dataclass
class OpenAnswer:
    """An answer started and not yet ended; only the oldest one streams."""

    seq: int
    prompt_seq: int
    batches: list[str] = field(default_factory=list)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by CancelAnswer; the streaming answer's worker stops and stores it as CANCELLED."""
    cancelled_by: str = ""
    """Who cancelled it (stored with its end for the audit log)."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the answer's end is stored."""
    usage: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Prompt, completion and regenerated tokens reported by this owner's model calls for the
    answer."""
    model_calls: int = 0
    """Model calls this owner made for the answer (more than 1: retries or a resume)."""
    first_batch_s: float = 0.0
    """Seconds from this owner starting the answer to its first stored batch (0: none yet)."""
    last_batch_at: float = 0.0
    """Monotonic time this owner sent the answer's latest batch (0: none yet)."""
    max_gap_s: float = 0.0
    """Longest wait between two batches this owner sent: the inter-token gap clients saw."""


@dataclass
class Invite:
    """An invite (events.AccessChanged of kind invite); only the code's SHA-256 is known."""

    invite_id: str
    code_hash: str
    role: str
    expires_ms: int
    created_by: str
    revoked: bool = False


class NotLoaded(LookupError):
    """An event or message before `base_seq` was asked of a windowed image (a bug in the
    caller: it must `complete` the image first)."""


class Session:
    """One session's events and derived views. `events[i]` has seq `base_seq + i + 1`."""

    def __init__(self, session_id: str, epoch: int, created_ms: int, accessed_ms: int) -> None:
        self.session_id = session_id
        self.epoch = epoch
        self.created_ms = created_ms
        self.accessed_ms = accessed_ms
        self.base_seq = 0
        """Events up to this seq are not in memory (a windowed image); 0: every event is."""
        self.snapshot_seq = 0
        """The seq the newest stored snapshot covers, as far as this image knows."""
        self.events: list[LogEvent] = []
        self.messages: list[Message] = []
        self._message_seqs: list[int] = []
        self.client_ids: dict[str, int] = {}
        self.answer_of_prompt: dict[int, int] = {}
        self.state: dict[str, Any] = {}
        self.state_size = 2
        """Upper bound of len(dump_json(state)) in bytes; exact after every recount."""
        self.version = 0
        self._state_json = "{}"
        self._state_json_version = 0
        self.open_answers: deque[OpenAnswer] = deque()
        self.subscribers: set[Subscriber] = set()
        self.owner = ""
        """The user of the first owner grant ("" while nobody owns the session)."""
        self.roles: dict[str, str] = {}
        """Users with access and their role (access.py), in grant order."""
        self.invites: dict[str, Invite] = {}
        self.removed: set[str] = set()
        """Users the owner removed (not those who left): invites do not let them back; the
        owner adding them again does."""
        self.title = ""
        self.deleted_ms = 0
        """When the thread was deleted (0: it is not)."""
        self.purge_ms = 0
        """When a deleted thread may be purged (purge.py)."""
        self.last_activity_ms = 0
        self.tree = MessageTree()
        """Parents, head and branches of the messages (docs/branches.md)."""
        self.feedback: dict[int, dict[str, FeedbackChanged]] = {}
        """Assistant message seq → user → their latest feedback on it."""
        self.message_count = 0
        self.token_totals = [0, 0, 0]
        """Prompt, completion and regenerated tokens of every answer's message."""
        self.first_ts_ms = 0
        """Time of the first event (seq 1)."""
        self.renamed = False
        """Whether the thread was ever given a title (auto_title.py)."""
        self.system_seqs: list[int] = []
        """Seqs of the system messages (the prompt window always shows those on the branch)."""

    @classmethod
    def load(
        cls, session_id: str, epoch: int, created_ms: int, accessed_ms: int, entries: list[bytes]
    ) -> Session:
        session = cls(session_id, epoch, created_ms, accessed_ms)
        for index, raw in enumerate(entries):
            session.apply(decode(index + 1, raw))
        session.state_size = len(dump_json(session.state).encode())
        return session

    @property
    def last_seq(self) -> int:
        return self.base_seq + len(self.events)

    @property
    def whole(self) -> bool:
        """Whether every event of the log is in memory."""
        return self.base_seq == 0

    def event_at(self, seq: int) -> LogEvent:
        if seq <= self.base_seq:
            raise NotLoaded(seq)
        return self.events[seq - self.base_seq - 1]

    def events_after(self, seq: int) -> list[LogEvent]:
        """The events after `seq` (NotLoaded when some of them are not in memory)."""
        if seq < self.base_seq:
            raise NotLoaded(seq)
        return self.events[seq - self.base_seq :]

    def hydrate(self, event: LogEvent) -> None:
        """Adds an event a snapshot already counted (its derived views are in the snapshot):
        only the in-memory log, messages and their client ids."""
        if event.seq != self.last_seq + 1:
            raise ValueError(f"event seq {event.seq} does not follow {self.last_seq}")
        self.events.append(event)
        if isinstance(event, MessageEvent):
            self._keep_message(event.message)
        elif isinstance(event, AnswerStarted):
            self.answer_of_prompt.setdefault(event.prompt_seq, event.seq)

    def complete(self, older: list[bytes]) -> None:
        """Makes a windowed image whole with the log's first `base_seq` entries: the events,
        messages, client ids and answers before the window. ValueError when the replay does not
        reach the same views (a snapshot that does not match the log: the owner must close)."""
        if self.whole:
            return
        if len(older) != self.base_seq:
            raise ValueError(f"{len(older)} older entries for a window at {self.base_seq}")
        full = Session.load(self.session_id, self.epoch, self.created_ms, self.accessed_ms, older)
        for event in self.events:
            full.apply(event)
        same = (full.version, full.tree.head, full.message_count, full.roles)
        if same != (self.version, self.tree.head, self.message_count, self.roles):
            raise ValueError(f"the snapshot of session {self.session_id} does not match its log")
        self.events, self.messages, self._message_seqs = (
            full.events,
            full.messages,
            full._message_seqs,
        )
        self.client_ids, self.answer_of_prompt = full.client_ids, full.answer_of_prompt
        self.base_seq = 0

    def state_json(self) -> str:
        """The state as compact JSON, encoded once per version."""
        if self._state_json_version != self.version:
            self._state_json = dump_json(self.state)
            self._state_json_version = self.version
        return self._state_json

    def apply(self, event: LogEvent, new_state: dict[str, Any] | None = None) -> None:
        """Adds an acknowledged log event; `new_state` spares recomputing a patch result."""
        if event.seq != self.last_seq + 1:
            raise ValueError(f"event seq {event.seq} does not follow {self.last_seq}")
        self.events.append(event)
        if event.seq == 1:
            self.first_ts_ms = event.ts_ms
        if isinstance(event, MessageAppended):
            self._add_message(event.message)
            self.tree.add(event.seq)
        elif isinstance(event, BranchSelected):
            self.tree.select(event.head)
        elif isinstance(event, StateChanged):
            self.state = (
                new_state
                if new_state is not None
                else apply_patch(self.state, parse_json(event.patch_json))
            )
            self.version = event.version
        elif isinstance(event, AccessChanged):
            self._apply_access(event)
        elif isinstance(event, FeedbackChanged):
            given = self.feedback.setdefault(event.message_seq, {})
            given.pop(event.user, None)  # the latest last, so they stay in time order
            if event.rating or event.comment:
                given[event.user] = event
        elif isinstance(event, ThreadChanged):
            if event.title:
                self.title = event.title
                self.renamed = True
            if event.deleted:
                self.deleted_ms, self.purge_ms = event.ts_ms, event.purge_ms
            elif event.restored:
                self.deleted_ms = 0
        elif isinstance(event, AnswerStarted):
            self.open_answers.append(OpenAnswer(event.seq, event.prompt_seq))
            self.answer_of_prompt.setdefault(event.prompt_seq, event.seq)
            self.tree.start_answer(event.seq)
        elif isinstance(event, AnswerRestarted):
            # The interrupted text stays as a version beside the answer; the answer's batches
            # start again (Redis deleted them in the same script).
            self._add_message(event.message)
            self.tree.add_version(event.seq, event.message.answer_seq)
            for answer in self.open_answers:
                if answer.seq == event.message.answer_seq:
                    answer.batches = []
        else:
            self._add_message(event.message)
            self.tree.end_answer(event.seq, event.message.answer_seq)
            for answer in self.open_answers:
                if answer.seq == event.message.answer_seq:
                    answer.ended.set()
            self.open_answers = deque(
                a for a in self.open_answers if a.seq != event.message.answer_seq
            )

    def _apply_access(self, event: AccessChanged) -> None:
        if event.invite_hash:
            self.invites[event.invite_id] = Invite(
                event.invite_id, event.invite_hash, event.role, event.expires_ms, event.by
            )
        elif event.revoked:
            if event.invite_id in self.invites:
                self.invites[event.invite_id].revoked = True
        elif event.role:
            self.roles[event.user] = event.role
            if not self.owner and event.role == "owner":
                self.owner = event.user
            if not event.invite_id:  # granted by the owner, not joined by invite
                self.removed.discard(event.user)
        else:
            self.roles.pop(event.user, None)
            if event.by != event.user:
                self.removed.add(event.user)

    def online(self) -> tuple[str, ...]:
        """Users with an open subscription, sorted (anonymous ones are not counted)."""
        return tuple(sorted({s.user for s in self.subscribers if s.user}))

    def attachment(self, sha: str) -> tuple[str, str, str, int] | None:
        """The newest reference to a file by a message of this session (None: none)."""
        for message in reversed(self.messages):
            for ref in message.attachments:
                if ref[0] == sha:
                    return ref
        if not self.whole:
            raise NotLoaded(sha)
        return None

    def _add_message(self, message: Message) -> None:
        self.last_activity_ms = message.ts_ms
        self.message_count += 1
        self.token_totals[0] += message.prompt_tokens
        self.token_totals[1] += message.completion_tokens
        self.token_totals[2] += message.regenerated_tokens
        if message.role == "system":
            self.system_seqs.append(message.seq)
        self._keep_message(message)

    def _keep_message(self, message: Message) -> None:
        self.messages.append(message)
        self._message_seqs.append(message.seq)
        if message.client_id:
            self.client_ids[message.client_id] = message.seq

    def message_for(self, seq: int, field: str) -> Message:
        """The message at `seq`; InvalidArgument naming `field` when there is none."""
        try:
            return self.message_at(seq)
        except KeyError:
            raise InvalidArgument(f"{field} {seq} is no message of this session") from None

    def require_message(self, seq: int, field: str) -> None:
        """InvalidArgument naming `field` unless `seq` is a message's (in memory or not)."""
        if seq not in self.tree.parent:
            raise InvalidArgument(f"{field} {seq} is no message of this session")

    def message_at(self, seq: int) -> Message:
        if seq < 1:  # no message has it: KeyError as for any seq that is no message's
            raise KeyError(seq)
        if seq <= self.base_seq:
            raise NotLoaded(seq)
        index = bisect.bisect_left(self._message_seqs, seq)
        if index == len(self._message_seqs) or self._message_seqs[index] != seq:
            raise KeyError(seq)
        return self.messages[index]

    def messages_after(
        self, after_seq: int, limit: int, through: int = 0, all_branches: bool = False
    ) -> tuple[list[Message], bool]:
        """A page of the active branch (or the branch through `through`, or every message),
        in seq order, after `after_seq`. NotLoaded for a message before a window: the actor
        reads those from Redis (`SessionActor.messages_at` of `page_seqs`)."""
        seqs, more = self.page_seqs(after_seq, limit, through, all_branches)
        return [self.message_at(seq) for seq in seqs], more

    def page_seqs(
        self, after_seq: int, limit: int, through: int = 0, all_branches: bool = False
    ) -> tuple[list[int], bool]:
        """The seqs of `messages_after`'s page, from the tree (which knows every message, in
        memory or not): for a windowed image, whose older messages are read from Redis."""
        if all_branches or not self.tree.branched:
            seqs = list(self.tree.parent)  # every message, in seq order
        else:
            seqs = self.tree.path(self.tree.leaf_of(through) if through else self.tree.head)
        start = bisect.bisect_right(seqs, after_seq)
        return seqs[start : start + limit], start + limit < len(seqs)

    def history_until(self, prompt_seq: int) -> list[Message]:
        """The prompt's branch up to and including it (empty answers left out), oldest first."""
        history, whole = self.recent_history(prompt_seq)
        if not whole:
            raise NotLoaded(prompt_seq)
        return history

    def recent_history(self, prompt_seq: int) -> tuple[list[Message], bool]:
        """`history_until`'s messages that are in memory, and whether that is all of them."""
        if self.tree.branched:
            path = self.tree.path(prompt_seq)
            here = [seq for seq in path if seq > self.base_seq]
            history = [self.message_at(seq) for seq in here]
            whole = len(here) == len(path)
        else:
            history = self.messages[: bisect.bisect_right(self._message_seqs, prompt_seq)]
            whole = len(self.messages) == self.message_count
        return [m for m in history if m.role != "assistant" or m.content], whole

    def path_before_window(self, prompt_seq: int) -> list[int]:
        """The message seqs of the prompt's branch that are before the window, oldest first."""
        if self.tree.branched:
            return [seq for seq in self.tree.path(prompt_seq) if seq <= self.base_seq]
        return [seq for seq in self.tree.parent if seq <= self.base_seq]

    def system_before_window(self, prompt_seq: int) -> bool:
        """Whether a system message not in memory is on the prompt's branch."""
        older = [seq for seq in self.system_seqs if seq <= self.base_seq]
        if not older:
            return False
        if not self.tree.branched:
            return True
        return bool(set(older) & set(self.tree.path(prompt_seq)))

    def add_delta(self, text: str) -> AnswerDelta:
        """Records a batch of the streaming (oldest open) answer."""
        answer = self.open_answers[0]
        delta = AnswerDelta(answer.seq, len(answer.batches), text)
        answer.batches.append(text)
        return delta

    def replay(
        self, after_seq: int | None, after_offset: int, older: list[LogEvent] | None = None
    ) -> list[Event]:
        """What a subscriber with cursor (after_seq, after_offset) has not seen, then CaughtUp.

        `after_seq=None` starts at the end, or at the streaming answer's start if one streams.
        A cursor before a windowed image's window needs `older`: the events after it through
        `base_seq` (read from Redis); the streaming answer is always inside the window.
        """
        streaming = self.open_answers[0] if self.open_answers else None
        if after_seq is None:
            after_seq = streaming.seq - 1 if streaming else self.last_seq
            after_offset = 0
        after_seq = min(after_seq, self.last_seq)
        out: list[Event]
        if after_seq < self.base_seq and older is not None:
            if [e.seq for e in older[:1]] != [after_seq + 1] or older[-1].seq != self.base_seq:
                raise NotLoaded(after_seq)
            out = [*older, *self.events]
        else:
            out = list(self.events_after(after_seq))
        if streaming is not None:
            # The offset counts batches of the answer streaming at the cursor; if any answer
            # ended or restarted after the cursor, the current one's batches start at 0.
            ended_since = any(isinstance(e, AnswerEnded | AnswerRestarted) for e in out)
            first = after_offset if streaming.seq <= after_seq and not ended_since else 0
            out.extend(
                AnswerDelta(streaming.seq, index, streaming.batches[index])
                for index in range(first, len(streaming.batches))
            )
        offset = len(streaming.batches) if streaming else 0
        out.append(CaughtUp(self.last_seq, offset))
        return out

    def broadcast(self, event: Event) -> int:
        """Pushes to every subscriber; returns how many were cut off (too far behind)."""
        dropped = 0
        for subscriber in list(self.subscribers):
            subscriber.push(event)
            if subscriber.closed:
                self.subscribers.discard(subscriber)
                dropped += 1
        return dropped
