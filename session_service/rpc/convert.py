"""Domain values ↔ durablechat.v1 protos; the only place below the servicer that sees _pb2 types."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from durablechat.v1 import access_pb2, common_pb2, session_pb2, threads_pb2
from session_service.log import events
from session_service.log.events import Event
from session_service.log.session import Session
from session_service.store.threads import Thread

ROLE_TO_PROTO = {
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "system": common_pb2.ROLE_SYSTEM,
}
ROLE_FROM_PROTO = {value: key for key, value in ROLE_TO_PROTO.items()}
STATUS_TO_PROTO = {
    "": common_pb2.ANSWER_STATUS_UNSPECIFIED,
    events.COMPLETED: common_pb2.ANSWER_STATUS_COMPLETED,
    events.INTERRUPTED: common_pb2.ANSWER_STATUS_INTERRUPTED,
    events.FAILED: common_pb2.ANSWER_STATUS_FAILED,
    events.CANCELLED: common_pb2.ANSWER_STATUS_CANCELLED,
}


ACCESS_ROLE_TO_PROTO = {
    "": access_pb2.ACCESS_ROLE_UNSPECIFIED,
    "owner": access_pb2.ACCESS_ROLE_OWNER,
    "member": access_pb2.ACCESS_ROLE_MEMBER,
    "viewer": access_pb2.ACCESS_ROLE_VIEWER,
}
ACCESS_ROLE_FROM_PROTO = {value: key for key, value in ACCESS_ROLE_TO_PROTO.items()}


def timestamp(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


RATING_TO_PROTO = {
    "": common_pb2.RATING_UNSPECIFIED,
    events.UP: common_pb2.RATING_UP,
    events.DOWN: common_pb2.RATING_DOWN,
}
RATING_FROM_PROTO = {value: key for key, value in RATING_TO_PROTO.items()}


def imported(by: str | None, named: str) -> common_pb2.Imported | None:
    """The mark of what an import stored (None: not imported); `named` is the file's name."""
    return None if by is None else common_pb2.Imported(by=by, named_user=named)


def feedback(f: events.FeedbackChanged) -> common_pb2.Feedback:
    return common_pb2.Feedback(
        user=events.acted_by(f.user, f.imported_by),
        imported=imported(f.imported_by, f.user),
        rating=RATING_TO_PROTO[f.rating],
        comment=f.comment,
        updated_at=timestamp(f.ts_ms),
    )


def message(
    m: events.Message, given: dict[str, events.FeedbackChanged] | None = None, parent: int = 0
) -> common_pb2.Message:
    return common_pb2.Message(
        parent_seq=parent,
        attachments=[
            common_pb2.AttachmentRef(sha256=sha, filename=name, mime_type=mime, size=size)
            for sha, name, mime, size in m.attachments
        ],
        reply_to=m.reply_to,
        feedback=[feedback(f) for f in (given or {}).values()],
        seq=m.seq,
        role=ROLE_TO_PROTO[m.role],
        content=m.content,
        user=events.acted_by(m.user, m.imported_by),
        imported=imported(m.imported_by, m.user),
        created_at=timestamp(m.ts_ms),
        client_message_id=m.client_id,
        answer_seq=m.answer_seq,
        answer_status=STATUS_TO_PROTO[m.answer_status],
        usage=common_pb2.Usage(
            prompt_tokens=m.prompt_tokens,
            completion_tokens=m.completion_tokens,
            regenerated_tokens=m.regenerated_tokens,
        ),
    )


def session(s: Session, state_json: str, your_role: str = "") -> session_pb2.Session:
    return session_pb2.Session(
        owner=s.owner,
        your_role=ACCESS_ROLE_TO_PROTO[your_role],
        title=s.title,
        head_seq=s.tree.head,
        branch_leaves=s.tree.leaves(),
        session_id=s.session_id,
        state_json=state_json,
        version=s.version,
        message_count=s.message_count,
        last_seq=s.last_seq,
        created_at=timestamp(s.created_ms),
        last_accessed_at=timestamp(s.accessed_ms),
        epoch=s.epoch,
        usage=common_pb2.Usage(
            prompt_tokens=s.token_totals[0],
            completion_tokens=s.token_totals[1],
            regenerated_tokens=s.token_totals[2],
        ),
    )


def event(
    e: Event, epoch: int, parents: Mapping[int, int] | None = None
) -> session_pb2.SubscribeResponse:
    """One stream event; `parents` (the session's tree) gives messages their parent."""
    out = session_pb2.SessionEvent(epoch=epoch)
    parent = (parents or {}).get(getattr(e, "seq", 0), 0)
    if isinstance(e, events.MessageAppended):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.message_appended.message.CopyFrom(message(e.message, parent=parent))
    elif isinstance(e, events.StateChanged):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.state_changed.patch_json = e.patch_json
        out.state_changed.version = e.version
    elif isinstance(e, events.AnswerStarted):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.answer_started.prompt_seq = e.prompt_seq
    elif isinstance(e, events.AnswerDelta):
        out.seq = e.answer_seq
        out.offset = e.offset
        out.answer_delta.text = e.text
    elif isinstance(e, events.AnswerEnded):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.answer_ended.message.CopyFrom(message(e.message, parent=parent))
        out.answer_ended.error = e.error
    elif isinstance(e, events.AnswerRestarted):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.answer_restarted.interrupted.CopyFrom(message(e.message, parent=parent))
        out.answer_restarted.error = e.error
    elif isinstance(e, events.AccessChanged):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        changed = out.access_changed
        changed.user, changed.by, changed.invite_id = e.user, e.by, e.invite_id
        changed.role = ACCESS_ROLE_TO_PROTO[e.role]
        changed.invite_revoked = e.revoked
    elif isinstance(e, events.ThreadChanged):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        thread_changed = out.thread_changed
        thread_changed.title, thread_changed.by = e.title, events.acted_by(e.by, e.imported_by)
        thread_changed.deleted, thread_changed.restored = e.deleted, e.restored
    elif isinstance(e, events.FeedbackChanged):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.feedback_changed.message_seq = e.message_seq
        out.feedback_changed.feedback.CopyFrom(feedback(e))
    elif isinstance(e, events.BranchSelected):
        out.seq = e.seq
        out.time.CopyFrom(timestamp(e.ts_ms))
        out.branch_selected.head_seq = e.head
        out.branch_selected.by = events.acted_by(e.by, e.imported_by)
    elif isinstance(e, events.PresenceChanged):
        out.seq = e.seq
        out.offset = e.offset
        out.presence_changed.users.extend(e.users)
    else:
        out.seq = e.seq
        out.offset = e.offset
        out.caught_up.SetInParent()
    mark = _imported_mark(e)
    if mark is not None:
        out.imported.CopyFrom(mark)
    return session_pb2.SubscribeResponse(event=out)


def _imported_mark(e: Event) -> common_pb2.Imported | None:
    if isinstance(e, events.MessageEvent):
        return imported(e.message.imported_by, e.message.user)
    if isinstance(e, events.StateChanged | events.FeedbackChanged):
        return imported(e.imported_by, e.user)
    if isinstance(e, events.ThreadChanged | events.BranchSelected):
        return imported(e.imported_by, e.by)
    if isinstance(e, events.AnswerStarted):
        return imported(e.imported_by, e.by)
    return None


def thread(t: Thread) -> threads_pb2.ThreadSummary:
    return threads_pb2.ThreadSummary(
        session_id=t.session_id,
        title=t.title,
        preview=t.preview,
        last_activity_at=timestamp(t.last_activity_ms),
        message_count=t.message_count,
        unread_count=t.unread,
        pinned=t.pinned,
        archived=t.archived,
    )


def share_path(session_id: str, code: str = "") -> str:
    """The web page's path for a room (and an invite code, in the fragment)."""
    return f"/#t={session_id}" + (f"&invite={code}" if code else "")
