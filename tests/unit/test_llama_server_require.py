"""The real-model tests never skip silently in CI: with llama-server or the model missing they
are skipped locally (naming the install command) and fail when CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import llama_server


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_server, "binary_path", lambda: None)
    monkeypatch.setattr(llama_server, "model_path", lambda: None)


def test_missing_llama_server_skips_locally(
    nothing_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make real-model"):
        llama_server.require()


def test_missing_llama_server_fails_in_ci(
    nothing_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and llama-server is not installed"):
        llama_server.require()


def test_the_command_line_picks_the_mode() -> None:
    prefill = llama_server.argv(Path("bin"), Path("m.gguf"), "127.0.0.1", 1234, prefill=True)
    restart = llama_server.argv(Path("bin"), Path("m.gguf"), "127.0.0.1", 1234, prefill=False)
    assert "--no-prefill-assistant" not in prefill
    assert restart == [*prefill, "--no-prefill-assistant"]
    assert prefill[prefill.index("--alias") + 1] == llama_server.ALIAS
