"""The per-user RPCs of `durablechat.v1.SessionService`: GetUserUsage and the thread RPCs of
threads.proto (docs/threads.md). ListThreads, SetThreadFlags and MarkRead are served by this
pod from the caller's index (store/threads.py) and wake no owner; RenameThread, DeleteThread and
RestoreThread are routed to the owner like every other write (session_service/rpc/dispatch.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf import message as pb_message

from durablechat.v1 import common_pb2, session_pb2, threads_pb2
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from session_service.features.threads.ops import ThreadOps
from session_service.log import validate
from session_service.rpc import convert
from session_service.rpc.dispatch import Context, Dispatcher, Local, T
from session_service.rpc.handling import abort, checked, known
from session_service.rpc.methods import DELETE_THREAD, RENAME_THREAD, RESTORE_THREAD
from session_service.store.threads import ThreadStore
from session_service.store.usage import UsageStore

PAGE_DEFAULT = 50
PAGE_MAX = 500
NO_USERS = "threads are listed per signed-in user; this deployment runs AUTH_MODE=off"


class ThreadRpcs:
    """The caller's thread index served here; thread writes routed through the shared
    dispatcher."""

    def __init__(self, dispatch: Dispatcher, threads: ThreadStore, usage: UsageStore) -> None:
        self._dispatch = dispatch
        self._threads = threads
        self._usage = usage

    async def _own(
        self,
        request: pb_message.Message,
        context: Context,
        serve: Callable[[str], Awaitable[T]],
        with_session: bool = True,
    ) -> T:
        """A call on the caller's own index, served here."""
        try:
            caller, _ = await self._dispatch.identify(context)
            if with_session:
                checked(request)
            else:
                known(request)
            if not caller.user:
                raise FailedPrecondition(NO_USERS)
            await self._dispatch.quotas.check_request(caller.user)
            return await serve(caller.user)
        except Exception as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises

    async def ListThreads(
        self, request: threads_pb2.ListThreadsRequest, context: Context
    ) -> threads_pb2.ListThreadsResponse:
        async def serve(user: str) -> threads_pb2.ListThreadsResponse:
            limit = request.limit or PAGE_DEFAULT
            if limit > PAGE_MAX:
                raise InvalidArgument(f"limit must be at most {PAGE_MAX}")
            page = await self._threads.page(user, request.archived, limit, request.page_token)
            return threads_pb2.ListThreadsResponse(
                threads=[convert.thread(t) for t in page.threads],
                next_page_token=page.next_token,
            )

        return await self._own(request, context, serve, with_session=False)

    async def SetThreadFlags(
        self, request: threads_pb2.SetThreadFlagsRequest, context: Context
    ) -> threads_pb2.SetThreadFlagsResponse:
        async def serve(user: str) -> threads_pb2.SetThreadFlagsResponse:
            pinned = request.pinned if request.HasField("pinned") else None
            archived = request.archived if request.HasField("archived") else None
            thread = await self._threads.set_flags(user, request.session_id, pinned, archived)
            return threads_pb2.SetThreadFlagsResponse(thread=convert.thread(thread))

        return await self._own(request, context, serve)

    async def MarkRead(
        self, request: threads_pb2.MarkReadRequest, context: Context
    ) -> threads_pb2.MarkReadResponse:
        async def serve(user: str) -> threads_pb2.MarkReadResponse:
            thread = await self._threads.mark_read(user, request.session_id)
            return threads_pb2.MarkReadResponse(thread=convert.thread(thread))

        return await self._own(request, context, serve)

    async def RenameThread(
        self, request: threads_pb2.RenameThreadRequest, context: Context
    ) -> threads_pb2.RenameThreadResponse:
        def prepare(caller: Caller) -> Local[threads_pb2.RenameThreadResponse]:
            title = validate.title(request.title)

            async def rename(actor: SessionActor) -> threads_pb2.RenameThreadResponse:
                seq = await ThreadOps(actor).rename(caller, title)
                return threads_pb2.RenameThreadResponse(seq=seq, epoch=actor.session.epoch)

            return rename

        return await self._dispatch.unary(RENAME_THREAD, request, context, prepare)

    async def DeleteThread(
        self, request: threads_pb2.DeleteThreadRequest, context: Context
    ) -> threads_pb2.DeleteThreadResponse:
        def prepare(caller: Caller) -> Local[threads_pb2.DeleteThreadResponse]:
            async def delete(actor: SessionActor) -> threads_pb2.DeleteThreadResponse:
                seq, purge_ms = await ThreadOps(actor).delete(caller)
                return threads_pb2.DeleteThreadResponse(
                    seq=seq, purge_at=convert.timestamp(purge_ms), epoch=actor.session.epoch
                )

            return delete

        return await self._dispatch.unary(DELETE_THREAD, request, context, prepare)

    async def RestoreThread(
        self, request: threads_pb2.RestoreThreadRequest, context: Context
    ) -> threads_pb2.RestoreThreadResponse:
        def prepare(caller: Caller) -> Local[threads_pb2.RestoreThreadResponse]:
            async def restore(actor: SessionActor) -> threads_pb2.RestoreThreadResponse:
                seq = await ThreadOps(actor).restore(caller)
                return threads_pb2.RestoreThreadResponse(seq=seq, epoch=actor.session.epoch)

            return restore

        return await self._dispatch.unary(RESTORE_THREAD, request, context, prepare)

    async def GetUserUsage(
        self, request: session_pb2.GetUserUsageRequest, context: Context
    ) -> session_pb2.GetUserUsageResponse:
        try:
            caller, _ = await self._dispatch.identify(context)
            known(request)
            user = validate.name(request.user, "user") or caller.user
            if not user:
                raise InvalidArgument("user must not be empty")
            if caller.enforced and user != caller.user:
                raise PermissionDenied("you can read your own usage only")
            totals = await self._usage.get(user)
        except Exception as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises
        return session_pb2.GetUserUsageResponse(
            usage=common_pb2.Usage(
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                regenerated_tokens=totals.regenerated_tokens,
            ),
            answers=totals.answers,
        )
