"""SetFeedback of `durablechat.v1.SessionService`, routed to the session's owner like every write
(session_service/rpc/dispatch.py). The contract is features/feedback/ops.py."""

from __future__ import annotations

from durablechat.v1 import session_pb2
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import InvalidArgument
from session_service.features.feedback.ops import FeedbackOps
from session_service.log import validate
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher, Local
from session_service.rpc.methods import SET_FEEDBACK


class FeedbackRpcs:
    """SetFeedback, routed through the shared dispatcher."""

    def __init__(self, dispatch: Dispatcher) -> None:
        self._dispatch = dispatch

    async def SetFeedback(
        self, request: session_pb2.SetFeedbackRequest, context: Context
    ) -> session_pb2.SetFeedbackResponse:
        def prepare(caller: Caller) -> Local[session_pb2.SetFeedbackResponse]:
            rating = convert.RATING_FROM_PROTO.get(request.rating)
            if rating is None:
                raise InvalidArgument("rating must be RATING_UP, RATING_DOWN or RATING_UNSPECIFIED")
            user = validate.name(request.user, "user")

            async def rate(actor: SessionActor) -> session_pb2.SetFeedbackResponse:
                seq = await FeedbackOps(actor).set_feedback(
                    caller, request.message_seq, rating, request.comment, user
                )
                return session_pb2.SetFeedbackResponse(seq=seq, epoch=actor.session.epoch)

            return rate

        return await self._dispatch.unary(SET_FEEDBACK, request, context, prepare)
