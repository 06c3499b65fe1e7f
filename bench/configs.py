"""The configurations a bench measures, as `make run` starts the system:

- "default": access control on (AUTH_MODE=jwt with a fresh key; the load clients mint tokens),
  per-IP rate limits counted in Redis, the search indexer, automatic titles;
- "auth-off": the same with AUTH_MODE=off (issue 17's "today" figures were taken so).

In both, the per-user limits are raised, not turned off: every request still goes through the
rate and token buckets, the socket and stream caps, but a load of thousands of sockets and
prompts from a few users does not hit them (one person at these rates would). Every other
setting is the default at this git SHA; bench/environment.py records what the processes really
ran with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deploy.stack.spec import StackSpec

RAISED_LIMITS = {
    "RATE_USER_PER_MIN": "100000000",
    "TOKENS_PER_MIN": "1000000000",
    "TOKENS_PER_DAY": "100000000000",
    "MAX_SESSIONS_PER_USER": "10000000",
    "MAX_SOCKETS_PER_USER": "1000000",
    "MAX_STREAMS_PER_USER": "1000000",
    "RATE_IP_PER_MIN": "100000000",
}
"""Pods and gateway; each process reads its own names and ignores the others."""


@dataclass(frozen=True)
class BenchConfig:
    name: str
    auth: bool
    title: str

    def spec(
        self,
        token_delay_ms: int,
        pod_env: Mapping[str, str] | None = None,
        ai_env: Mapping[str, str] | None = None,
    ) -> StackSpec:
        """One session pod, the dev model at `token_delay_ms`, this configuration's settings;
        `pod_env` and `ai_env` on top (a trial's settings)."""
        return StackSpec(
            auth=self.auth,
            token_delay_ms=token_delay_ms,
            search=True,
            rate_limits_in_redis=True,
            pod_env={**RAISED_LIMITS, **(pod_env or {})},
            ai_env=dict(ai_env or {}),
            gateway_env=RAISED_LIMITS,
        )

    @property
    def base_env(self) -> dict[str, str]:
        """What every process gets under its own settings (the Stack's base_env): nothing
        but AUTH_MODE=off when access control is off; StackSpec.auth sets up the rest."""
        return {} if self.auth else {"AUTH_MODE": "off"}


DEFAULT = BenchConfig("default", True, "access control on (AUTH_MODE=jwt, as `make run`)")
AUTH_OFF = BenchConfig("auth-off", False, "AUTH_MODE=off")
CONFIGS = {c.name: c for c in (DEFAULT, AUTH_OFF)}
