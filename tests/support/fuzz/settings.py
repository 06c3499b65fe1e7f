"""The fuzz battery's stack settings (tests/security/conftest.py starts it)."""

from __future__ import annotations

SSE_HEARTBEAT_MS = 200
"""An event stream notices a client that left at its next heartbeat: the fuzzers drop many."""

GENEROUS_PER_MIN = "1000000"
"""Rate limits stay on (their code runs on every call) but far above what the fuzzers send in
a minute as a handful of users, or most examples would test RESOURCE_EXHAUSTED and little else
(tests/security/test_limits.py tests the limits themselves)."""

MAX_ATTACHMENT_BYTES = 256 * 1024
"""Small, so the fuzzers reach the per-file limit with little data."""

POD_ENV = {
    "MAX_ATTACHMENT_BYTES": str(MAX_ATTACHMENT_BYTES),
    "RATE_USER_PER_MIN": GENEROUS_PER_MIN,
    "TOKENS_PER_MIN": GENEROUS_PER_MIN,
    "TOKENS_PER_DAY": GENEROUS_PER_MIN,
}

SEARCH_ENV = {"SEARCH_RATE_PER_MIN": GENEROUS_PER_MIN}

GATEWAY_ENV = {
    "MAX_ATTACHMENT_BYTES": str(MAX_ATTACHMENT_BYTES),
    "RATE_IP_PER_MIN": GENEROUS_PER_MIN,
    "SSE_HEARTBEAT_MS": str(SSE_HEARTBEAT_MS),
    "AUTH_DEV_LOGIN": "true",  # so /api/login and /api/logout exist and are fuzzed too
}
