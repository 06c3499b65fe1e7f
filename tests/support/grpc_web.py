"""A gRPC-web server stream as a browser reads it (through Envoy): the request as one data frame,
the reply's data frames decoded as they arrive, the trailer frame ending it."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import aiohttp

from durablechat.v1 import session_pb2

TRAILER = 0x80
HEADER = struct.Struct(">BI")


def frame(message: bytes) -> bytes:
    return HEADER.pack(0, len(message)) + message


async def subscribe(
    http: aiohttp.ClientSession, edge_url: str, request: session_pb2.SubscribeRequest
) -> AsyncIterator[session_pb2.SessionEvent]:
    """The events of one Subscribe over gRPC-web; ends at the trailer (its status is raised as
    RuntimeError unless 0)."""
    async with http.post(
        f"{edge_url}/durablechat.v1.SessionService/Subscribe",
        data=frame(request.SerializeToString()),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    ) as reply:
        assert reply.status == 200, reply.status
        while True:
            flags, length = HEADER.unpack(await reply.content.readexactly(HEADER.size))
            body = await reply.content.readexactly(length)
            if flags & TRAILER:
                trailers = body.decode()
                if "grpc-status:0" not in trailers.replace(" ", ""):
                    raise RuntimeError(trailers)
                return
            yield session_pb2.SubscribeResponse.FromString(body).event
