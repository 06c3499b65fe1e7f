"""Start-up and shutdown of `python -m ai_service` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.stack.processes import ROOT
from deploy.stack.running import Stack

pytestmark = pytest.mark.timeout(60)


def test_sigterm_stops_the_service_with_exit_code_zero(own_stack: Stack) -> None:
    own_stack.start_model(token_delay_ms=0)
    ai = own_stack.start_ai()

    ai.stop()

    assert ai.proc is not None
    assert ai.proc.returncode == 0, ai.log_tail()


def test_missing_api_key_for_real_openai_fails_at_start_naming_the_variable() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPENAI_")}

    done = subprocess.run(
        [sys.executable, "-m", "ai_service"],
        env={**env, "AI_PORT": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode != 0
    assert "OPENAI_API_KEY" in done.stderr
