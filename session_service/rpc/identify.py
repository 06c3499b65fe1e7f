"""Who is calling: the token from gRPC metadata (the `authorization` header, or the page's
`dc_token` cookie through Envoy), verified (common/auth.py) and checked against revocations
(common/revocation.py). Shared by the session pods and the search indexer."""

from __future__ import annotations

from typing import Any

import grpc

from common.auth import AuthError, Verifier, from_cookie
from common.revocation import Revocations
from common.wire import AUTHORIZATION, COOKIE_HEADER
from session_service.errors import Unauthenticated


async def identify(
    context: grpc.aio.ServicerContext[Any, Any], verifier: Verifier, revocations: Revocations
) -> tuple[str, str]:
    """(user, the authorization value that carried the token); raises Unauthenticated."""
    metadata = context.invocation_metadata() or ()
    value = next((str(v) for k, v in metadata if k == AUTHORIZATION), "") or from_cookie(
        next((str(v) for k, v in metadata if k == COOKIE_HEADER), "")
    )
    try:
        user, issued_at = await verifier.identify_async(value)
    except AuthError as exc:
        raise Unauthenticated(str(exc)) from exc
    if await revocations.revoked(user, issued_at):
        raise Unauthenticated("the token was revoked; get a new one")
    return user, value


def carried_on(value: str) -> tuple[tuple[str, str], ...]:
    """The metadata that carries the caller's token (`identify`'s value) on to a peer."""
    return ((AUTHORIZATION, value),) if value else ()
