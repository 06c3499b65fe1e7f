"""The aiohttp application (routes, JSON errors for every failure) and `serve` until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
import redis.asyncio
from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace

from common import tracing
from common.auth import Verifier
from common.grpc_server import CHANNEL_OPTIONS
from common.ratelimit import RedisClient
from gateway.abuse import ip_rate_limit
from gateway.attachments_rest import AttachmentRoutes
from gateway.branches_rest import BranchRoutes
from gateway.config import Config
from gateway.cors import add_headers, cors
from gateway.deadlines import DeadlineSite
from gateway.errors import GatewayError, code_for_http_status, error_body
from gateway.fanout_server import FanoutServicer, create_fanout_server
from gateway.feeds import Feeds
from gateway.hosts import allowed_hosts
from gateway.hub import Hubs
from gateway.identity import DevLogin, authenticate, whoami
from gateway.metrics import GatewayMetrics
from gateway.page import Page
from gateway.rest import RestRoutes
from gateway.routing import PodRouter
from gateway.search_rest import SearchRoutes
from gateway.sse import EventStreams
from gateway.threads_rest import ThreadRoutes
from gateway.upstream import SessionClient
from gateway.ws import SocketRoutes

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

SHUTDOWN_TIMEOUT_S = 10.0
FANOUT_GRACE_S = 2.0
"""Fan-out streams are told UNAVAILABLE at shutdown; this long for that to reach them."""
"""How long in-flight requests and closing sockets get before they are cancelled."""
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
"""Reconnect to a restarted session service within the hubs' 2 s backoff, not gRPC's 120 s."""


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {"code", "message"}}` with its HTTP status."""
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.status >= 500:
            logger.warning(
                "request failed", extra={"path": request.path, "code": exc.code, "error": exc}
            )
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(
            error_body(code_for_http_status(exc.status), _router_message(request, exc)),
            status=exc.status,
            headers=headers,
        )
    except Exception:
        logger.exception("unhandled error", extra={"path": request.path})
        return web.json_response(error_body("INTERNAL", "internal error"), status=500)


@web.middleware
async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span per HTTP request, continuing a caller's `traceparent` (a no-op span when
    tracing is off). WebSockets get a span per prompt instead (ws.py)."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    with _tracer.start_as_current_span(
        f"{request.method} {route}",
        context=propagate.extract(dict(request.headers)),
        kind=trace.SpanKind.SERVER,
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


def _router_message(request: web.Request, exc: web.HTTPException) -> str:
    """Says what the router refused, in words a client can act on."""
    if exc.status == 404:
        return f"no route for {request.method} {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return exc.text or exc.reason
    return exc.reason


def create_app(
    cfg: Config,
    client: SessionClient,
    sockets: SocketRoutes,
    metrics: GatewayMetrics,
    limits_redis: RedisClient | None = None,
) -> web.Application:
    verifier = Verifier(cfg.auth)
    app = web.Application(
        middlewares=[
            metrics.middleware,
            allowed_hosts(cfg.allowed_hosts),
            traced,
            json_errors,
            cors(cfg.cors_origins),
            ip_rate_limit(limits_redis, cfg.rate_ip_per_min, cfg.trusted_proxies),
            authenticate(verifier),
        ],
        client_max_size=cfg.http_max_body_bytes,
    )
    app.on_response_prepare.append(add_headers)
    app.router.add_get("/api/me", whoami(verifier, cfg.dev_login))
    if cfg.dev_login:
        login = DevLogin(cfg.auth.secret, cfg.trusted_proxies)
        app.router.add_post("/api/login", login.login)
        app.router.add_post("/api/logout", login.logout)
    rest = RestRoutes(client, cfg.max_history_reply_bytes)
    app.router.add_get("/healthz", rest.healthz)
    app.router.add_get("/metrics", metrics.serve)
    Page(cfg.web_dir).add_routes(app)
    app.router.add_get("/api/chat/session/{session_id}", rest.get_session)
    app.router.add_put("/api/chat/session/{session_id}", rest.put_session)
    app.router.add_get("/api/chat/session/{session_id}/messages", rest.list_messages)
    app.router.add_post("/api/chat/session/{session_id}/messages", rest.post_message)
    app.router.add_post("/api/chat/session/{session_id}/cancel", rest.cancel_answer)
    app.router.add_post("/api/chat/session/{session_id}/messages/{seq}/feedback", rest.set_feedback)
    app.router.add_get(
        "/api/chat/session/{session_id}/events",
        EventStreams(client, cfg.sse_heartbeat_ms / 1000, cfg.max_streams_per_user).stream,
    )
    ThreadRoutes(client).add_routes(app)
    BranchRoutes(client).add_routes(app)
    SearchRoutes(cfg.search_service_addr).add_routes(app)
    AttachmentRoutes(client, cfg.max_attachment_bytes).add_routes(app)
    app.router.add_get("/ws/{thread_id}", sockets.connect, allow_head=False)
    return app


def channel_target(addresses: str) -> tuple[str, list[tuple[str, str]]]:
    """One address as is; several (comma-separated IP:port, one per session pod) become one
    channel that spreads calls round-robin and skips pods that are down. Any pod serves any
    session: a pod that does not own it forwards the call to the owner. `dns:///name:port` with a
    name that resolves to every pod (a compose network alias) is spread the same way."""
    if addresses.startswith("dns:"):  # one name for every pod (compose's `session` alias)
        return addresses, [("grpc.lb_policy_name", "round_robin")]
    if "," not in addresses:
        return addresses, []
    return f"ipv4:{addresses}", [("grpc.lb_policy_name", "round_robin")]


class Fanout:
    """The gRPC fan-out's server and feeds (gateway/fanout_server.py), stopped together."""

    def __init__(self, server: grpc.aio.Server, feeds: Feeds) -> None:
        self.server, self.feeds = server, feeds

    async def stop(self) -> None:
        self.feeds.close()
        await self.server.stop(FANOUT_GRACE_S)


async def start_fanout(
    cfg: Config, client: SessionClient, tasks: asyncio.TaskGroup, metrics: GatewayMetrics
) -> Fanout | None:
    """The gRPC fan-out on FANOUT_PORT, serving; None when FANOUT_PORT is 0."""
    if not cfg.fanout_port:
        return None
    feeds = Feeds(
        client, tasks, cfg.grpc_deadline_s, cfg.fanout_window_events, cfg.fanout_stream_queue
    )
    metrics.feeds.set_function(lambda: len(feeds))
    servicer = FanoutServicer(feeds, client, Verifier(cfg.auth), cfg.fanout_max_streams_per_user)
    server, _ = create_fanout_server(servicer, cfg.bind_host, cfg.fanout_port)
    await server.start()
    return Fanout(server, feeds)


async def serve(cfg: Config) -> None:
    """Serves until SIGTERM/SIGINT, then closes sockets (1001), the server and the channel."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    target, balancing = channel_target(cfg.session_service_addr)
    channel = grpc.aio.insecure_channel(
        target,
        options=[*CHANNEL_OPTIONS, *RECONNECT_OPTIONS, *balancing],
        interceptors=tracing.client_interceptors(),
    )
    try:
        async with asyncio.TaskGroup() as tasks:
            router = PodRouter(channel, RECONNECT_OPTIONS, cfg.cluster.metadata())
            refresher = tasks.create_task(router.refresh_forever())
            client = SessionClient(channel, cfg.grpc_deadline_s, router=router)
            hubs = Hubs(client, tasks, cfg.grpc_deadline_s)
            metrics = GatewayMetrics()
            sockets = SocketRoutes(cfg, client, hubs, metrics)
            limits_redis = (
                redis.asyncio.Redis.from_url(cfg.rate_limit_redis_url, socket_timeout=1.0)
                if cfg.rate_limit_redis_url
                else None
            )
            runner = web.AppRunner(
                create_app(cfg, client, sockets, metrics, limits_redis),
                shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            )
            await runner.setup()
            fanout: Fanout | None = None
            try:
                site = DeadlineSite(
                    runner,
                    cfg.bind_host,
                    cfg.port,
                    cfg.header_read_timeout_s,
                    cfg.send_stall_timeout_s,
                )
                fanout = await start_fanout(cfg, client, tasks, metrics)  # before /healthz
                await site.start()
                logger.info(
                    "gateway serving",
                    extra={
                        "addresses": [str(a) for a in runner.addresses],
                        "session_service": cfg.session_service_addr,
                        "fanout_port": cfg.fanout_port or None,
                    },
                )
                await stop.wait()
                logger.info("gateway shutting down")
                sockets.close_all()
            finally:
                if fanout is not None:
                    await fanout.stop()
                await runner.cleanup()
                hubs.close()
                refresher.cancel()
                if limits_redis is not None:
                    await limits_redis.aclose()
                await router.close()
    finally:
        await channel.close()
        logger.info("gateway stopped")
