"""A session as JSON Lines and back (docs/export.md): pure, no I/O.

`export_lines` writes the header and one line per exported event; `parse_import` checks a whole
file and returns its events; `import_entries` turns them into log entries for a session whose
next seq is known. References between events use the export's own numbering (`n`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from session_service.errors import InvalidArgument
from session_service.limits import Limits
from session_service.log import validate
from session_service.log.events import (
    ANSWER_STATUSES,
    RATINGS,
    AnswerEnded,
    AnswerRestarted,
    AnswerStarted,
    BranchSelected,
    FeedbackChanged,
    LogEvent,
    MessageAppended,
    StateChanged,
    ThreadChanged,
    encode_answer_end,
    encode_answer_start,
    encode_branch,
    encode_feedback,
    encode_message,
    encode_rename,
    encode_state,
    imported_by_of,
    mark_imported,
)
from session_service.log.merge_patch import BadJson, apply_patch, dump_json, parse_json
from session_service.store.attachments import valid_filename, valid_sha

FORMAT = "durablechat.session"
VERSION = 1
USAGE_FIELDS = ("prompt", "completion", "regenerated")
CLOCK_SKEW_MS = 24 * 3600 * 1000
MESSAGES = ("message", "assistant_message", "answer_ended")
"""The kinds of export lines that are messages (an assistant's own line, AppendMessage's)."""
MAX_NAME_CHARS = 128
IMPORTED_BY = "importedBy"
"""Export field: who imported the event (docs/export.md, "Authorship")."""
REF_FIELDS = ("sha256", "filename", "mimeType", "size")


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def export_events(events: list[LogEvent]) -> list[dict[str, Any]]:
    """The exported events of a log prefix, numbered from 1 (see the module docstring)."""
    ended = {e.message.answer_seq for e in events if isinstance(e, AnswerEnded)}
    numbers: dict[int, int] = {}
    out: list[dict[str, Any]] = []
    for e in events:
        item = _exported(e, numbers, ended)
        if item is not None:
            numbers[e.seq] = len(out) + 1
            imported_by = imported_by_of(e)
            if imported_by is not None:  # (a file's own importedBy is never read back)
                item[IMPORTED_BY] = imported_by
            out.append({"n": len(out) + 1, **item})
    return out


def _exported(e: LogEvent, n: dict[int, int], ended: set[int]) -> dict[str, Any] | None:
    if isinstance(e, MessageAppended):
        m = e.message
        item: dict[str, Any] = {"type": "message", "role": m.role, "content": m.content}
        item.update(user=m.user, time=m.ts_ms)
        if m.client_id:
            item["clientMessageId"] = m.client_id
        if m.reply_to in n:  # (a fork leaves out replied-to messages of other branches)
            item["replyTo"] = n[m.reply_to]
        if m.attachments:
            item["attachments"] = [dict(zip(REF_FIELDS, ref, strict=True)) for ref in m.attachments]
        return item
    if isinstance(e, StateChanged):
        item = {"type": "state", "version": e.version, "patch": json.loads(e.patch_json)}
        return {**item, "user": e.user, "time": e.ts_ms}
    if isinstance(e, AnswerStarted):
        if e.seq not in ended:  # still streaming: left out (its prompt is exported)
            return None
        return {"type": "answer_started", "prompt": n[e.prompt_seq], "time": e.ts_ms}
    if isinstance(e, AnswerEnded):
        m = e.message
        item = {"type": "answer_ended", "answer": n[m.answer_seq], "content": m.content}
        item.update(status=m.answer_status, time=m.ts_ms)
        if e.error:
            item["error"] = e.error
        if e.cancelled_by:
            item["cancelledBy"] = e.cancelled_by
        usage = (m.prompt_tokens, m.completion_tokens, m.regenerated_tokens)
        if any(usage):
            item["usage"] = dict(zip(USAGE_FIELDS, usage, strict=True))
        return item
    if isinstance(e, ThreadChanged):
        if not e.title:  # deletes and restores are not exported
            return None
        return {"type": "renamed", "title": e.title, "by": e.by, "time": e.ts_ms}
    if isinstance(e, FeedbackChanged):
        if e.message_seq not in n:  # on an interrupted version, which is not exported
            return None
        item = {"type": "feedback", "message": n[e.message_seq], "user": e.user}
        return {**item, "rating": e.rating, "comment": e.comment, "time": e.ts_ms}
    if isinstance(e, BranchSelected):
        return {"type": "branch", "head": n[e.head] if e.head else 0, "by": e.by, "time": e.ts_ms}
    # Access changes belong to the session, not to its content; an answer's interrupted
    # versions (AnswerRestarted) are left out: its end holds the answer.
    return None


def branch_events(events: list[LogEvent], path: list[int]) -> list[LogEvent]:
    """The events of one branch (message seqs `path`, ending at the last event kept): its
    messages and their answers, the state changes and renames up to there, feedback on its
    answers; no head moves (the branch is a line)."""
    on_path = set(path)
    answers = {
        e.message.answer_seq for e in events if isinstance(e, AnswerEnded) and e.seq in on_path
    }
    kept: list[LogEvent] = []
    for e in events[: path[-1]] if path else []:
        if isinstance(e, MessageAppended | AnswerEnded):
            keep = e.seq in on_path
        elif isinstance(e, AnswerStarted):
            keep = e.seq in answers
        elif isinstance(e, FeedbackChanged):
            keep = e.message_seq in on_path
        else:
            keep = not isinstance(e, BranchSelected | AnswerRestarted)
        if keep:
            kept.append(e)
    return kept


def export_lines(session_id: str, events: list[LogEvent], now_ms: int) -> list[str]:
    items = export_events(events)
    header = {"format": FORMAT, "version": VERSION, "sessionId": session_id}
    header.update(exportedAt=now_ms, events=len(items))
    return [_line(header), *(_line(item) for item in items)]


class _Line:
    """Typed access to one parsed line's fields; every failure names the line."""

    def __init__(self, number: int, fields: dict[str, Any]) -> None:
        self.number = number
        self.fields = fields

    def fail(self, why: str) -> InvalidArgument:
        return InvalidArgument(f"import line {self.number}: {why}")

    def get(self, name: str, kind: type, default: Any = None) -> Any:
        value: Any = self.fields.get(name, default)
        if type(value) is not kind:  # (exactly: a bool is no int here)
            raise self.fail(f"{name!r} must be {kind.__name__}")
        if isinstance(value, int) and not 0 <= value < 2**63:
            raise self.fail(f"{name!r} is out of range")
        return value

    def ref(self, name: str, types: dict[int, str], want: tuple[str, ...]) -> int:
        target = self.get(name, int)
        if types.get(target) not in want:
            raise self.fail(f"{name!r} must name an earlier {' or '.join(want)} event by its n")
        return int(target)


def parse_import(text: str, limits: Limits, now_ms: int) -> list[dict[str, Any]]:
    """Checks a whole export file; returns its events (header dropped). Raises InvalidArgument.
    Times may be up to a day ahead of `now_ms` (clock skew between deployments), no more."""
    latest_ms = now_ms + CLOCK_SKEW_MS
    # Only "\n" ends a line: JSON text may hold U+2028 and friends, which splitlines() splits at.
    rows = [row.removesuffix("\r") for row in text.split("\n")]
    if not rows:
        raise InvalidArgument("import is empty: expected a header line and events")
    header = _parse_line(1, rows[0])
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InvalidArgument(f"import line 1: not a {FORMAT} version {VERSION} header")
    types: dict[int, str] = {}
    state: Any = {}
    open_answers: set[int] = set()
    client_ids: set[str] = set()
    events: list[dict[str, Any]] = []
    for number, raw in enumerate(rows[1:], start=2):
        if not raw.strip():
            continue
        line = _Line(number, _parse_line(number, raw))
        kind = line.get("type", str)
        if line.get("n", int) != len(events) + 1:
            raise line.fail(f"'n' must be {len(events) + 1}")
        if line.get("time", int) > latest_ms:
            raise line.fail("'time' is in the future")
        check = _CHECKS.get(kind)
        if check is None:
            raise line.fail(f"unknown type {kind!r}")
        state = check(line, types, limits, state, open_answers, client_ids)
        assistant = kind == "message" and line.fields.get("role") == "assistant"
        types[len(events) + 1] = "assistant_message" if assistant else kind
        events.append(line.fields)
    if open_answers:
        raise InvalidArgument(f"answer(s) {sorted(open_answers)} start but never end")
    size = len(dump_json(state).encode())
    if size > limits.max_state_bytes:
        raise InvalidArgument(f"state would be {size} bytes; the limit is {limits.max_state_bytes}")
    return events


def _parse_line(number: int, raw: str) -> dict[str, Any]:
    try:
        value = parse_json(raw)
    except BadJson as exc:
        raise InvalidArgument(f"import line {number}: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"import line {number}: must be a JSON object")
    return value


Check = Callable[[_Line, dict[int, str], Limits, Any, set[int], set[str]], Any]


def _message(
    line: _Line, types: dict[int, str], limits: Limits, state: Any, _: set[int], ids: set[str]
) -> Any:
    try:
        validate.role(line.get("role", str))
        validate.content(line.get("content", str), limits.max_content_bytes)
        validate.name(line.get("user", str, ""), "user")
        client_id = validate.name(line.get("clientMessageId", str, ""), "clientMessageId")
    except InvalidArgument as exc:
        raise line.fail(str(exc)) from exc
    if client_id and client_id in ids:
        raise line.fail(f"clientMessageId {client_id!r} is used twice")
    ids.add(client_id)
    if "replyTo" in line.fields:
        line.ref("replyTo", types, MESSAGES)
    for ref in line.get("attachments", list, []):
        if not isinstance(ref, dict) or set(ref) != set(REF_FIELDS):
            raise line.fail(f"'attachments' items must have exactly {REF_FIELDS}")
        try:
            valid_sha(_Line(line.number, ref).get("sha256", str))
            valid_filename(_Line(line.number, ref).get("filename", str))
        except InvalidArgument as exc:
            raise line.fail(str(exc)) from exc
        _Line(line.number, ref).get("mimeType", str)
        _Line(line.number, ref).get("size", int)
    return state


def _state(line: _Line, types: dict[int, str], _: Limits, state: Any, *__: Any) -> Any:
    versions = sum(1 for kind in types.values() if kind == "state")
    if line.get("version", int) != versions + 1:
        raise line.fail(f"'version' must be {versions + 1}")
    patch = line.get("patch", dict)
    line.get("user", str, "")
    return apply_patch(state, patch)


def _answer_started(
    line: _Line, types: dict[int, str], _: Limits, state: Any, opened: set[int], __: set[str]
) -> Any:
    line.ref("prompt", types, ("message", "assistant_message"))
    opened.add(int(line.fields["n"]))
    return state


def _answer_ended(
    line: _Line, types: dict[int, str], limits: Limits, state: Any, opened: set[int], __: set[str]
) -> Any:
    answer = line.ref("answer", types, ("answer_started",))
    if answer not in opened:
        raise line.fail(f"answer {answer} has already ended")
    opened.discard(answer)
    if len(line.get("content", str).encode("utf-8")) > limits.max_content_bytes * 16:
        raise line.fail("'content' is larger than an answer can be")
    if line.get("status", str) not in ANSWER_STATUSES:
        raise line.fail(f"'status' must be one of {sorted(ANSWER_STATUSES)}")
    if len(line.get("error", str, "")) > 2000:
        raise line.fail("'error' is longer than 2000 characters")
    _name(line, "cancelledBy", "")
    for name, value in line.get("usage", dict, {}).items():
        if name not in USAGE_FIELDS or type(value) is not int or not 0 <= value < 2**32:
            raise line.fail(f"'usage' field {name!r} must be one of {USAGE_FIELDS}, 0 to 2^32-1")
    return state


def _renamed(line: _Line, _: dict[int, str], __: Limits, state: Any, *___: Any) -> Any:
    try:
        validate.title(line.get("title", str))
    except InvalidArgument as exc:
        raise line.fail(str(exc)) from exc
    _name(line, "by")
    return state


def _feedback(line: _Line, types: dict[int, str], _: Limits, state: Any, *__: Any) -> Any:
    line.ref("message", types, ("answer_ended", "assistant_message"))
    _name(line, "user")
    if line.get("rating", str) not in RATINGS:
        raise line.fail('\'rating\' must be "up", "down" or ""')
    if len(line.get("comment", str)) > validate.MAX_COMMENT_CHARS:
        raise line.fail(f"'comment' is longer than {validate.MAX_COMMENT_CHARS} characters")
    return state


def _branch(line: _Line, types: dict[int, str], _: Limits, state: Any, *__: Any) -> Any:
    if line.get("head", int) != 0:
        line.ref("head", types, MESSAGES)
    _name(line, "by")
    return state


def _name(line: _Line, field: str, default: str | None = None) -> str:
    value: str = line.get(field, str, default)
    if len(value) > MAX_NAME_CHARS:
        raise line.fail(f"{field!r} is longer than {MAX_NAME_CHARS} characters")
    return value


_CHECKS: dict[str, Check] = {
    "message": _message,
    "state": _state,
    "answer_started": _answer_started,
    "answer_ended": _answer_ended,
    "renamed": _renamed,
    "feedback": _feedback,
    "branch": _branch,
}


def set_importer(events: list[dict[str, Any]], importer: str) -> None:
    """Records who imports checked events, replacing any `importedBy` the file gave: the one
    value `import_entries` marks entries with."""
    for event in events:
        event[IMPORTED_BY] = importer


def import_entries(events: list[dict[str, Any]], first_seq: int) -> list[bytes]:
    """Log entries for checked events stored from `first_seq` on (event n → seq first + n - 1),
    each marked as imported by its importer (`set_importer`, required): the authors the file
    names are kept for the export but never shown or audited as theirs (docs/export.md,
    "Authorship")."""
    entries = _entries(events, first_seq)
    return [mark_imported(raw, e[IMPORTED_BY]) for raw, e in zip(entries, events, strict=True)]


def _entries(events: list[dict[str, Any]], first_seq: int) -> list[bytes]:

    def seq(n: int) -> int:
        return first_seq + n - 1

    out: list[bytes] = []
    for e in events:
        kind, ts = e["type"], e["time"]
        if kind == "message":
            reply = seq(e["replyTo"]) if e.get("replyTo") else 0
            user, client_id = e.get("user", ""), e.get("clientMessageId", "")
            refs = tuple(tuple(r[f] for f in REF_FIELDS) for r in e.get("attachments", []))
            out.append(encode_message(e["role"], e["content"], user, ts, client_id, reply, refs))
        elif kind == "state":
            patch = dump_json(e["patch"])
            out.append(encode_state(patch, e["version"], ts, e.get("user", "")))
        elif kind == "answer_started":
            out.append(encode_answer_start(seq(e["prompt"]), ts))
        elif kind == "answer_ended":
            u = e.get("usage", {})
            usage = (u.get("prompt", 0), u.get("completion", 0), u.get("regenerated", 0))
            out.append(
                encode_answer_end(
                    seq(e["answer"]),
                    e["content"],
                    e["status"],
                    e.get("error", ""),
                    ts,
                    usage,
                    e.get("cancelledBy", ""),
                )
            )
        elif kind == "branch":
            out.append(encode_branch(seq(e["head"]) if e["head"] else 0, e["by"], ts))
        elif kind == "renamed":
            out.append(encode_rename(validate.title(e["title"]), e["by"], ts))
        else:
            message = seq(e["message"])
            out.append(encode_feedback(message, e["user"], e["rating"], e["comment"], ts))
    return out
