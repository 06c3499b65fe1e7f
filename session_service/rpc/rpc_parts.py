"""What the RPC mixins of SessionServicer (access_servicer.py, thread_servicer.py,
feedback_servicer.py) use from it (servicer.py): `_unary` validates, authenticates and routes a
call to the session's owner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import message as pb_message

from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
Local = Callable[[SessionActor], Awaitable[T]]


class RpcParts:
    async def _unary(
        self,
        method: str,
        request: pb_message.Message,
        context: Context,
        prepare: Callable[[Caller], Local[T]],
    ) -> T:
        raise NotImplementedError
