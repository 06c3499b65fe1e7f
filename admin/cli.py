"""`durablechat`: the admin CLI. Talks gRPC to any session pod (`--addr`, or DURABLECHAT_ADDR).

    durablechat members              live pods, their addresses and ring shares
    durablechat where SESSION        the pod the ring names, the pod serving it, and its epoch
    durablechat sessions             sessions and subscribers per pod (asks every pod)
    durablechat drain POD            the pod leaves the ring and hands its sessions over
    durablechat move SESSION         the pod holding a session hands it off (reload / rebalance)
    durablechat tail SESSION         the session's events as JSON lines, live (Ctrl-C stops)
    durablechat token --user U       a token for U (AUTH_MODE=jwt; HS256 secret file)
    durablechat token --admin --user U   an operator's token (members, where, sessions, drain, move)
    durablechat revoke --user U      void every token of U issued until now (all pods)
    durablechat chat THREAD          the seed WebSocket from a terminal (TOKEN: a token)

The cluster commands (members, where, sessions, drain, move) need an operator's credential: an
admin token (`--admin-token` or DURABLECHAT_ADMIN_TOKEN; mint one with `durablechat token --admin
--user YOU`) or the pods' cluster key (`--cluster-secret-file` or CLUSTER_SECRET_FILE). With
AUTH_MODE=off and no cluster key the pods ask for none.

Exit status 0 on success, 1 when a call fails (the gRPC status is printed), 2 on bad usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc
import redis.asyncio
from google.protobuf import json_format

from admin.chat import chat
from common import revocation
from common.auth import mint
from common.config import ConfigError
from common.exposure import with_password
from common.ring import HashRing
from common.wire import AUTHORIZATION, CLUSTER_KEY
from durablechat.v1 import cluster_pb2, cluster_pb2_grpc, session_pb2, session_pb2_grpc

T = TypeVar("T")
TIMEOUT_S = 10.0
SHARE_SAMPLE = 20_000
"""Session ids hashed to estimate each pod's share of the ring."""


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Runs one command; a failed call exits 1 with its status, not a traceback."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as exc:
        click.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
        sys.exit(1)


@dataclass(frozen=True)
class Pods:
    """Where the cluster commands go, and the operator's credential they carry."""

    addr: str
    metadata: tuple[tuple[str, str], ...]


async def members_of(pods: Pods) -> cluster_pb2.ListMembersResponse:
    async with grpc.aio.insecure_channel(pods.addr) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.ListMembersRequest()
        return await stub.ListMembers(request, timeout=TIMEOUT_S, metadata=pods.metadata)


def ring_of(members: cluster_pb2.ListMembersResponse) -> HashRing:
    pods = [m.pod_id for m in members.members]
    return HashRing(pods, members.vnodes) if members.vnodes else HashRing(pods)


@click.group(help="\n\n".join(__doc__.split("\n\n")[0:3:2]))
@click.option(
    "--addr",
    envvar="DURABLECHAT_ADDR",
    default="127.0.0.1:50051",
    show_default=True,
    help="host:port of any session pod",
)
@click.option(
    "--admin-token",
    envvar="DURABLECHAT_ADMIN_TOKEN",
    default="",
    help="an operator's token for the cluster commands (`durablechat token --admin`)",
)
@click.option(
    "--cluster-secret-file",
    envvar="CLUSTER_SECRET_FILE",
    default="",
    type=click.Path(dir_okay=False),
    help="or the pods' CLUSTER_SECRET_FILE, for the same commands",
)
@click.pass_context
def main(ctx: click.Context, addr: str, admin_token: str, cluster_secret_file: str) -> None:
    metadata: list[tuple[str, str]] = []
    if admin_token:
        metadata.append((AUTHORIZATION, f"Bearer {admin_token}"))
    if cluster_secret_file:
        try:
            key = Path(cluster_secret_file).read_text().strip()
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="--cluster-secret-file") from exc
        metadata.append((CLUSTER_KEY, key))
    ctx.obj = Pods(addr, tuple(metadata))


@main.command(help="Live pods, their addresses and their share of the ring.")
@click.pass_obj
def members(pods: Pods) -> None:
    found = run(lambda: members_of(pods))
    ring = ring_of(found)
    owners = [ring.owner(f"sample-{i}") for i in range(SHARE_SAMPLE)]
    click.echo(
        f"{len(found.members)} pods, {found.vnodes} virtual nodes each (asked {found.pod_id})"
    )
    for m in found.members:
        share = owners.count(m.pod_id) / SHARE_SAMPLE
        click.echo(f"  {m.pod_id:<16} {m.address:<22} {share:6.1%} of sessions")


async def status(
    pods: Pods, address: str, session_id: str = ""
) -> cluster_pb2.GetPodStatusResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.GetPodStatusRequest(session_id=session_id)
        return await stub.GetPodStatus(request, timeout=TIMEOUT_S, metadata=pods.metadata)


async def statuses(pods: Pods, session_id: str = "") -> list[cluster_pb2.GetPodStatusResponse]:
    found = await members_of(pods)
    asked = (status(pods, m.address, session_id) for m in found.members)
    return list(await asyncio.gather(*asked))


@main.command(help="Where a session lives: the ring's pod, and the pod holding it (its epoch).")
@click.argument("session_id")
@click.pass_obj
def where(pods: Pods, session_id: str) -> None:
    async def work() -> tuple[str, list[cluster_pb2.GetPodStatusResponse]]:
        preferred = ring_of(await members_of(pods)).owner(session_id)
        return preferred, await statuses(pods, session_id)

    preferred, found = run(work)
    holders = [p for p in found if p.session_epoch]
    click.echo(f"session   {session_id}")
    click.echo(f"ring pod  {preferred}")
    for pod in holders:
        click.echo(f"held by   {pod.pod_id}, epoch {pod.session_epoch}")
    if not holders:
        click.echo(f"held by   nobody (hibernating): the next call activates it on {preferred}")


@main.command(help="Sessions and subscribers each pod holds now.")
@click.option("--ids", is_flag=True, help="also list the session ids (up to 1000 per pod)")
@click.pass_obj
def sessions(pods: Pods, ids: bool) -> None:
    async def work() -> list[cluster_pb2.GetPodStatusResponse]:
        return await statuses(pods)

    for pod in run(work):
        state = " (draining)" if pod.draining else ""
        click.echo(
            f"  {pod.pod_id:<16} {pod.active_sessions:>6} sessions "
            f"{pod.subscribers:>6} subscribers{state}"
        )
        if ids:
            for sid in pod.session_ids:
                click.echo(f"      {sid}")


@main.command(help="Make a pod leave the ring and hand its sessions to the others.")
@click.argument("pod_id")
@click.pass_obj
def drain(pods: Pods, pod_id: str) -> None:
    async def work() -> cluster_pb2.DrainResponse:
        found = await members_of(pods)
        address = {m.pod_id: m.address for m in found.members}.get(pod_id)
        if address is None:
            raise click.UsageError(f"no live pod {pod_id!r}; see `durablechat members`")
        async with grpc.aio.insecure_channel(address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return await stub.Drain(cluster_pb2.DrainRequest(), timeout=60, metadata=pods.metadata)

    reply = run(work)
    click.echo(f"{reply.pod_id} drained; {reply.remaining_sessions} sessions left on it")


@main.command(help="Hand a session off the pod holding it; the next call activates it afresh.")
@click.argument("session_id")
@click.pass_obj
def move(pods: Pods, session_id: str) -> None:
    async def work() -> tuple[str, list[str]]:
        found = await members_of(pods)
        preferred = ring_of(found).owner(session_id)
        holders = [p for p in await statuses(pods, session_id) if p.session_epoch]
        address = {m.pod_id: m.address for m in found.members}
        moved = []
        for pod in holders:
            async with grpc.aio.insecure_channel(address[pod.pod_id]) as channel:
                stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                request = cluster_pb2.HandOffRequest(session_id=session_id)
                reply = await stub.HandOff(request, timeout=60, metadata=pods.metadata)
            if reply.held:
                moved.append(reply.pod_id)
        return preferred, moved

    preferred, moved = run(work)
    if not moved:
        click.echo(f"no pod holds {session_id}; the next call activates it on {preferred}")
        return
    click.echo(
        f"{session_id} handed off from {', '.join(moved)}; the next call activates it on "
        f"{preferred}"
    )


@main.command(help="Mint a token for USER with the HS256 secret the pods use (AUTH_MODE=jwt).")
@click.option("--user", required=True, help="the token's sub claim")
@click.option(
    "--admin",
    is_flag=True,
    help='an operator\'s token ("dc_admin": true): members, where, sessions, drain, move',
)
@click.option("--ttl", type=int, default=3600, show_default=True, help="seconds it is valid")
@click.option(
    "--secret-file",
    envvar="AUTH_SECRET_FILE",
    default=".run/auth-secret",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="the pods' AUTH_SECRET_FILE (`make run` generates the default)",
)
def token(user: str, admin: bool, ttl: int, secret_file: str) -> None:
    secret = Path(secret_file).read_bytes().strip()
    click.echo(mint(secret, user, ttl, admin=admin))


@main.command(help="Void every token of USER issued until now, on every pod (a leaked token).")
@click.option("--user", required=True, help="the tokens' sub claim")
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="the pods' Redis (REDIS_URL)",
)
@click.option(
    "--redis-password-file",
    envvar="REDIS_PASSWORD_FILE",
    default="",
    help="a file holding Redis's password, when the URL has none (REDIS_PASSWORD_FILE)",
)
def revoke(user: str, redis_url: str, redis_password_file: str) -> None:
    try:
        redis_url = with_password(redis_url, redis_password_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    async def work() -> int:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await revocation.revoke(client, user)
        finally:
            await client.aclose()

    before = run(work)
    click.echo(f"tokens of {user} issued before {before} (unix seconds) are refused")


@main.command(help="Print a session's events as JSON lines, from --after (default: now).")
@click.argument("session_id")
@click.option("--after", type=int, default=None, help="last seq already seen (0: everything)")
@click.option("--token", envvar="TOKEN", default="", help="a member's JWT (TOKEN)")
@click.pass_obj
def tail(pods: Pods, session_id: str, after: int | None, token: str) -> None:
    async def work() -> None:
        request = session_pb2.SubscribeRequest(session_id=session_id)
        if after is not None:
            request.after_seq = after
        async with grpc.aio.insecure_channel(pods.addr) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            metadata = ((AUTHORIZATION, f"Bearer {token}"),) if token else ()
            async for reply in stub.Subscribe(request, metadata=metadata):
                event: dict[str, Any] = json_format.MessageToDict(reply.event)
                click.echo(json.dumps(event, separators=(",", ":")))

    with contextlib.suppress(KeyboardInterrupt):
        run(work)


main.add_command(chat)
