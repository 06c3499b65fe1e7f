"""The stack variants the shared fixtures start (tests/conftest.py, tests/integration/conftest.py),
as specs of the one builder (deploy/stack/spec.py); a test may `start(own_stack, SLOW)`."""

from __future__ import annotations

from deploy.stack.spec import StackSpec

CORE = StackSpec(token_delay_ms=1, gateway=False)
"""Redis, the dev model (1 ms a token), the AI service and one session service."""
SLOW_TOKEN_DELAY_MS = 20
SLOW = StackSpec(token_delay_ms=SLOW_TOKEN_DELAY_MS)
"""A whole stack whose model waits 20 ms before each token: answers still stream while a test
joins, queues or restarts."""
