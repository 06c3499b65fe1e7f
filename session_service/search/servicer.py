"""`durablechat.v1.SearchService` (search.proto): the caller's token names the user whose
threads are searched (docs/search.md). A call is checked, then counted against the user's
rate (rate.py), then run in a reader thread (workers.py)."""

from __future__ import annotations

import re
from typing import Any

import grpc

from common.auth import Verifier
from common.revocation import Revocations
from durablechat.v1 import common_pb2, search_pb2, search_pb2_grpc
from session_service.errors import FailedPrecondition, InvalidArgument
from session_service.log import validate
from session_service.rpc import convert
from session_service.rpc.handling import abort, known
from session_service.rpc.identify import identify
from session_service.search.rate import SearchRate
from session_service.search.workers import IndexWorkers

Context = grpc.aio.ServicerContext[Any, Any]
PAGE_DEFAULT = 20
PAGE_MAX = 100
MAX_OFFSET = 10_000
_TOKEN = re.compile(r"[0-9]{1,5}")


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        workers: IndexWorkers,
        verifier: Verifier,
        revocations: Revocations,
        rate: SearchRate,
    ) -> None:
        self._workers = workers
        self._rate = rate
        self._verifier = verifier
        self._revocations = revocations

    async def _user(self, context: Context) -> str:
        user, _ = await identify(context, self._verifier, self._revocations)
        if not user:
            raise FailedPrecondition(
                "search is per signed-in user; this deployment runs AUTH_MODE=off"
            )
        return user

    async def SearchMessages(
        self, request: search_pb2.SearchMessagesRequest, context: Context
    ) -> search_pb2.SearchMessagesResponse:
        try:
            user = await self._user(context)
            known(request)
            if request.session_id:
                validate.session_id(request.session_id)
            limit = request.limit or PAGE_DEFAULT
            if limit > PAGE_MAX:
                raise InvalidArgument(f"limit must be at most {PAGE_MAX}")
            token = request.page_token
            if token and (not _TOKEN.fullmatch(token) or int(token) > MAX_OFFSET):
                raise InvalidArgument("page_token is not one SearchMessages gave out")
            offset = int(token or 0)
            await self._rate.check(user)
            hits = await self._workers.search(
                user, request.query, request.session_id, limit + 1, offset
            )
        except Exception as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises
        more = len(hits) > limit
        return search_pb2.SearchMessagesResponse(
            hits=[
                search_pb2.SearchHit(
                    session_id=h.session_id,
                    seq=h.seq,
                    role=convert.ROLE_TO_PROTO.get(h.role, common_pb2.ROLE_UNSPECIFIED),
                    user=h.user,
                    created_at=convert.timestamp(h.ts_ms),
                    snippet=h.snippet,
                    highlights=[search_pb2.TextRange(start=a, end=b) for a, b in h.highlights],
                    title=h.title,
                )
                for h in hits[:limit]
            ],
            next_page_token=str(offset + limit) if more else "",
        )
