"""Every `durablechat.v1.SessionService` method as a value: what routing needs to know about it.

A handler passes its method's descriptor (not its name) to the dispatcher (dispatch.py), which
reads the flags and, to forward a routed call, takes the peer's stub method through `peer`
(attribute access, checked by mypy). tests/unit/test_rpc_methods.py checks that this table names
every method of the service once and that each `peer` is the method its descriptor names.

- `needs_existing`: cannot succeed on a session that never existed; with access control on,
  NOT_FOUND without activating it, so probing ids stores nothing (activation keeps an epoch). The
  dispatcher checks it for routed calls and Subscribe; ForkSession (through ExportSession) and
  the thread-index calls (no index entry) refuse such ids by themselves.
- `prompts`: starts an answer, so it reserves model tokens (quotas.py); `answered` tells from
  its reply whether it did.
- `recent`: served from a windowed image (log/snapshot.py: the derived views and the recent
  events); the dispatcher makes the image whole before any other method runs.
- `write`: a forwarded call whose target leaves the cluster before answering may or may not be
  stored: OutcomeUnknown rather than Moving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from grpc import aio

if TYPE_CHECKING:  # the generated async stub exists only in the .pyi
    from durablechat.v1.session_pb2_grpc import SessionServiceAsyncStub

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True, kw_only=True)
class Rpc:
    """One SessionService method as routing sees it."""

    name: str
    needs_existing: bool = False
    prompts: bool = False
    write: bool = False
    recent: bool = False


@dataclass(frozen=True, kw_only=True)
class Routed(Rpc, Generic[Req, Resp]):
    """A unary method served by the session's owner: here, or forwarded to it via `peer`."""

    peer: Callable[[SessionServiceAsyncStub], aio.UnaryUnaryMultiCallable[Req, Resp]]
    answered: Callable[[Resp], bool] | None = None
    """For a method that `prompts`: whether its reply started an answer. A reply that did not
    (a duplicate, nothing to answer) gives the prompt's token reservation back."""


# Messages and answers (session.proto)
GET_SESSION = Routed(
    name="GetSession", needs_existing=True, recent=True, peer=lambda s: s.GetSession
)
UPDATE_STATE = Routed(name="UpdateState", write=True, recent=True, peer=lambda s: s.UpdateState)
APPEND_MESSAGE = Routed(
    name="AppendMessage", write=True, recent=True, peer=lambda s: s.AppendMessage
)
LIST_MESSAGES = Routed(
    name="ListMessages", needs_existing=True, recent=True, peer=lambda s: s.ListMessages
)
SEND_PROMPT = Routed(
    name="SendPrompt",
    prompts=True,
    answered=lambda reply: not reply.duplicate and reply.answer_seq != 0,
    write=True,
    recent=True,
    peer=lambda s: s.SendPrompt,
)
CANCEL_ANSWER = Routed(
    name="CancelAnswer", needs_existing=True, write=True, recent=True, peer=lambda s: s.CancelAnswer
)
SUBSCRIBE = Rpc(name="Subscribe", needs_existing=True)
"""A stream: served by the owner, relayed by the pod the client reached."""
GET_USER_USAGE = Rpc(name="GetUserUsage")
"""Per user, any pod answers."""

# Rooms (access.proto)
CREATE_ROOM = Routed(name="CreateRoom", recent=True, peer=lambda s: s.CreateRoom)
SET_MEMBER = Routed(name="SetMember", needs_existing=True, recent=True, peer=lambda s: s.SetMember)
CREATE_INVITE = Routed(
    name="CreateInvite", needs_existing=True, recent=True, peer=lambda s: s.CreateInvite
)
REVOKE_INVITE = Routed(
    name="RevokeInvite", needs_existing=True, recent=True, peer=lambda s: s.RevokeInvite
)
JOIN_ROOM = Routed(name="JoinRoom", needs_existing=True, recent=True, peer=lambda s: s.JoinRoom)
GET_ACCESS = Routed(name="GetAccess", needs_existing=True, recent=True, peer=lambda s: s.GetAccess)
LIST_AUDIT = Routed(name="ListAudit", needs_existing=True, peer=lambda s: s.ListAudit)

# Feedback and attachments
SET_FEEDBACK = Routed(
    name="SetFeedback", needs_existing=True, write=True, recent=True, peer=lambda s: s.SetFeedback
)
GET_ATTACHMENT = Routed(name="GetAttachment", needs_existing=True, peer=lambda s: s.GetAttachment)

# Branches (branches.proto)
EDIT_MESSAGE = Routed(
    name="EditMessage",
    needs_existing=True,
    prompts=True,
    answered=lambda reply: reply.answer_seq != 0,
    write=True,
    peer=lambda s: s.EditMessage,
)
REGENERATE_ANSWER = Routed(
    name="RegenerateAnswer",
    needs_existing=True,
    prompts=True,
    answered=lambda reply: reply.answer_seq != 0,
    write=True,
    peer=lambda s: s.RegenerateAnswer,
)
SELECT_BRANCH = Routed(
    name="SelectBranch", needs_existing=True, write=True, peer=lambda s: s.SelectBranch
)
FORK_SESSION = Rpc(name="ForkSession", needs_existing=True)
"""ExportSession from the owner, then ImportSession into a new session, both routed."""

# Export and import (export.proto)
EXPORT_SESSION = Routed(name="ExportSession", needs_existing=True, peer=lambda s: s.ExportSession)
IMPORT_SESSION = Routed(name="ImportSession", write=True, peer=lambda s: s.ImportSession)

# Threads (threads.proto): the caller's own index is served by any pod; the rest is routed.
LIST_THREADS = Rpc(name="ListThreads")
SET_THREAD_FLAGS = Rpc(name="SetThreadFlags", needs_existing=True)
MARK_READ = Rpc(name="MarkRead", needs_existing=True)
RENAME_THREAD = Routed(
    name="RenameThread", needs_existing=True, write=True, recent=True, peer=lambda s: s.RenameThread
)
DELETE_THREAD = Routed(
    name="DeleteThread", needs_existing=True, write=True, recent=True, peer=lambda s: s.DeleteThread
)
RESTORE_THREAD = Routed(
    name="RestoreThread",
    needs_existing=True,
    write=True,
    recent=True,
    peer=lambda s: s.RestoreThread,
)

EVERY: tuple[Rpc, ...] = (
    GET_SESSION, UPDATE_STATE, APPEND_MESSAGE, LIST_MESSAGES, SEND_PROMPT, CANCEL_ANSWER,
    SUBSCRIBE, GET_USER_USAGE,
    CREATE_ROOM, SET_MEMBER, CREATE_INVITE, REVOKE_INVITE, JOIN_ROOM, GET_ACCESS, LIST_AUDIT,
    SET_FEEDBACK, GET_ATTACHMENT,
    EDIT_MESSAGE, REGENERATE_ANSWER, SELECT_BRANCH, FORK_SESSION,
    EXPORT_SESSION, IMPORT_SESSION,
    LIST_THREADS, SET_THREAD_FLAGS, MARK_READ, RENAME_THREAD, DELETE_THREAD, RESTORE_THREAD,
)  # fmt: skip
"""Every method above, once."""
NEEDS_EXISTING = frozenset(rpc.name for rpc in EVERY if rpc.needs_existing)
