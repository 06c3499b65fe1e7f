"""The gRPC fan-out tier: `SessionService.Subscribe` served from this gateway's feeds.

Envoy routes `/durablechat.v1.SessionService/Subscribe` (gRPC and gRPC-web) here, so the owner
serves one stream per (session, user) per gateway, however many tabs follow the session.

Contract (docs/design.md "Fan-out", docs/resume.md):
- Only Subscribe is served; any other method of this port is UNIMPLEMENTED.
- Events: the same SubscribeResponse messages, in the same order, as the owner gives for the
  cursor (gateway/event_window.py mirrors its replay rule), then live events once each, in log
  order, sent after the owner sent them (so after Redis acknowledged them). A cursor the feed's
  window cannot serve (older than FANOUT_WINDOW_EVENTS log events, or ahead of the feed) is
  served by relaying the owner's own stream for it.
- Owner moves and restarts: the feed resubscribes from its cursor; streams here go on with no
  break (events after the move carry the new owner's epoch).
- Access, as the pods decide it: the token (`authorization` metadata, or the page's `dc_token`
  cookie through Envoy) is verified as the pods verify it (UNAUTHENTICATED, their message).
  When a token was sent, the owner is asked first with it (GetSession: revocation, NOT_FOUND,
  PERMISSION_DENIED, rate limits, with the owner's status and message), then the stream joins
  its user's feed; the owner ends that feed when the user loses access, and with it every
  stream of the user here, at once, NOT_FOUND.
- Load: a stream more than FANOUT_STREAM_QUEUE events behind is ended RESOURCE_EXHAUSTED
  (resubscribe from your cursor); a signed-in user holds at most FANOUT_MAX_STREAMS_PER_USER
  streams here (RESOURCE_EXHAUSTED past it). Any failure not from the owner is INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth import AuthError, Verifier, from_cookie
from common.wire import AUTHORIZATION, COOKIE_HEADER
from durablechat.v1 import session_pb2
from gateway.abuse import UserCap
from gateway.errors import GatewayError
from gateway.event_window import encode
from gateway.feeds import Feeds
from gateway.frames import Cursor
from gateway.identity import use_metadata
from gateway.upstream import SessionClient

logger = logging.getLogger(__name__)

SERVICE = "durablechat.v1.SessionService"
Context = grpc.aio.ServicerContext[Any, Any]


class FanoutServicer:
    """Subscribe over the feeds; the owner is asked only what it alone can answer."""

    def __init__(
        self, feeds: Feeds, client: SessionClient, verifier: Verifier, max_streams_per_user: int
    ) -> None:
        self._feeds = feeds
        self._client = client
        self._verifier = verifier
        self._cap = UserCap(max_streams_per_user, "gRPC streams", "FANOUT_MAX_STREAMS_PER_USER")

    async def subscribe(
        self, request: session_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[bytes]:
        after_seq = request.after_seq if request.HasField("after_seq") else None
        try:
            user, metadata = await self._identify(context)
            use_metadata(metadata)
            if metadata:  # the owner decides: revocation, membership, rate limits
                await self._client.get_session(request.session_id)
            with self._cap.hold(user):
                feed, stream = await self._feeds.attach(
                    request.session_id, user, metadata, after_seq, request.after_offset
                )
                if stream is None:  # the feed cannot serve this cursor: the owner's own stream
                    self._feeds.detach(feed, None)
                    async for data in self._relay(request.session_id, after_seq, request):
                        yield data
                    return
                try:
                    while True:
                        yield await stream.next()
                finally:
                    self._feeds.detach(feed, stream)
        except GatewayError as exc:
            await context.abort(_status(exc.code), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            logger.exception("fan-out stream failed", extra={"session_id": request.session_id})
            await context.abort(grpc.StatusCode.INTERNAL, "gateway error while streaming")

    async def _identify(self, context: Context) -> tuple[str, tuple[tuple[str, str], ...]]:
        """(user, the metadata carrying the token upstream), as the pods read a token."""
        metadata = context.invocation_metadata() or ()
        value = next((str(v) for k, v in metadata if k == AUTHORIZATION), "") or from_cookie(
            next((str(v) for k, v in metadata if k == COOKIE_HEADER), "")
        )
        try:
            user, _ = await self._verifier.identify_async(value)
        except AuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return user, ((AUTHORIZATION, value),) if value else ()

    async def _relay(
        self, session_id: str, after_seq: int | None, request: session_pb2.SubscribeRequest
    ) -> AsyncIterator[bytes]:
        """The owner's own stream for a cursor the feed cannot serve."""
        cursor = None if after_seq is None else Cursor(after_seq, request.after_offset)
        logger.info(
            "fan-out relays the owner's stream",
            extra={"session_id": session_id, "after_seq": after_seq},
        )
        async for event in self._client.subscribe_raw(session_id, cursor):
            yield encode(event)


def _status(code: str) -> grpc.StatusCode:
    return grpc.StatusCode.__members__.get(code, grpc.StatusCode.INTERNAL)


def create_fanout_server(
    servicer: FanoutServicer, host: str, port: int
) -> tuple[grpc.aio.Server, int]:
    """The fan-out's gRPC server on host:port (0: a free one), not started; returns the port."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                servicer.subscribe,
                request_deserializer=session_pb2.SubscribeRequest.FromString,
                response_serializer=None,  # the feeds hold encoded events: sent as they are
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
