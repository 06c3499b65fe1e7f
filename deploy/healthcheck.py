"""Container health checks: `python -m deploy.healthcheck grpc HOST:PORT` (the standard gRPC
health service answers SERVING) or `python -m deploy.healthcheck http URL` (HTTP 200).
Exit 0 when healthy, 1 otherwise; stdlib and grpcio only."""

from __future__ import annotations

import sys
import urllib.request


def grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("grpc", "http"):
        print("usage: python -m deploy.healthcheck grpc HOST:PORT | http URL", file=sys.stderr)
        return 2
    try:
        healthy = grpc_serving(argv[1]) if argv[0] == "grpc" else http_ok(argv[1])
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
