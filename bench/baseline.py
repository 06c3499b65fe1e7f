"""What this machine can do at best, measured in the same run so our figures read as a fraction:
raw `redis-benchmark` SETs against a redis-server with `appendfsync always`, and a bare gRPC
unary echo (grpc.aio server in its own process, no protos, no work).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.stats import latency_ms
from deploy.stack.ports import free_port
from deploy.stack.processes import Process, RedisServer

ECHO_METHOD = "/bench.Echo/Echo"


async def redis_fsync_always(requests: int) -> dict[str, Any]:
    """SET ops/s with 50 clients, unpipelined and pipelined by 16, on a fresh AOF-always Redis."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            result: dict[str, Any] = {"appendfsync": "always", "clients": 50}
            for name, pipeline in (("set_ops_per_s", 1), ("set_ops_per_s_pipeline_16", 16)):
                argv = ["redis-benchmark", "-p", str(server.port), "-t", "set", "-c", "50"]
                argv += ["-n", str(requests), "-P", str(pipeline), "--csv"]
                out = await asyncio.to_thread(
                    subprocess.run, argv, capture_output=True, text=True, check=True, timeout=300
                )
                rows = list(csv.reader(io.StringIO(out.stdout)))
                result[name] = round(float(rows[1][1]), 1)
            return result
        finally:
            server.stop()


def serve_echo(port: int) -> None:
    """The echo server's process: answers every call with its request bytes."""

    async def run() -> None:
        def echo(request: bytes, context: object) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


async def grpc_echo(seconds: float, concurrency: int = 50) -> dict[str, Any]:
    """Unary echo calls of 64 bytes from `concurrency` callers over one channel."""
    port = free_port()
    code = f"from bench.baseline import serve_echo; serve_echo({port})"
    with tempfile.TemporaryDirectory(prefix="bench-echo-") as workdir:
        argv = [sys.executable, "-c", code]
        server = Process("echo", argv, dict(os.environ), Path(workdir) / "echo.log")
        server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 20)
                call: Any = channel.unary_unary(ECHO_METHOD)
                samples: list[float] = []
                deadline = time.monotonic() + seconds

                async def caller() -> None:
                    while time.monotonic() < deadline:
                        sent = time.monotonic()
                        await call(b"x" * 64, timeout=10)
                        samples.append(time.monotonic() - sent)

                started = time.monotonic()
                await asyncio.gather(*(caller() for _ in range(concurrency)))
                elapsed = time.monotonic() - started
        finally:
            server.stop()
    return {
        "concurrency": concurrency,
        "ops_per_s": round(len(samples) / elapsed, 1),
        **latency_ms(samples),
    }
