"""`make run`'s launcher: every process started, PID files, clean Ctrl-C, busy ports named."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from common.auth import mint
from common.ring import HashRing
from deploy.run_local import POD_PORT_STEP
from deploy.stack.ports import free_port
from deploy.stack.processes import ROOT
from deploy.stack.waits import eventually, http_get
from tests.support.llama_server import require as require_llama

pytestmark = pytest.mark.slow

BASE_NAMES = ["redis", "model", "ai", "gateway", "envoy"]


def launcher_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {
        "RUN_DIR": str(tmp_path / "run"),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in (
        "REDIS_PORT",
        "DEV_MODEL_PORT",
        "AI_PORT",
        "SEARCH_PORT",
        "GATEWAY_PORT",
        "AI_METRICS_PORT",
        "ENVOY_PORT",
        "ENVOY_ADMIN_PORT",
    ):
        env[name] = str(free_port())
    for name in ("SESSION_PORT", "SESSION_METRICS_PORT"):  # pods 2 and 3 at +100, +200
        env[name] = str(free_port(POD_PORT_STEP, 2 * POD_PORT_STEP))
    return env


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_busy_port_is_named_before_anything_starts(tmp_path):
    env = launcher_env(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["GATEWAY_PORT"])))
        holder.listen()
        done = subprocess.run(
            [sys.executable, "-m", "deploy.run_local"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {env['GATEWAY_PORT']} (GATEWAY_PORT)" in done.stderr
    assert not (tmp_path / "run" / "redis.pid").exists()


@contextlib.contextmanager
def running_launcher(
    tmp_path: Path, pods: int, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """`make run`'s launcher on free ports; every process it started is gone afterwards."""
    env = launcher_env(tmp_path) | {"SESSION_PODS": str(pods)} | (extra_env or {})
    names = BASE_NAMES + [f"session-{i + 1}" for i in range(pods)]
    with (tmp_path / "launcher.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.run_local"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in names:  # never leave a child behind, even when the launcher failed
            pid_file = tmp_path / "run" / f"{name}.pid"
            if pid_file.exists() and pid_alive(pid := int(pid_file.read_text())):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=[1, 3], ids=["one-pod", "three-pods"])
def launched(tmp_path, request):
    with running_launcher(tmp_path, request.param) as (proc, env):
        names = BASE_NAMES + [f"session-{i + 1}" for i in range(request.param)]
        yield proc, env, names


def dev_token(tmp_path: Path) -> tuple[str, str]:
    """WebSocket subprotocols carrying a token minted with the key `make run` generated."""
    secret = (tmp_path / "run" / "auth-secret").read_bytes().strip()
    return ("durablechat", f"bearer.{mint(secret, 'a', 300)}")


def healthz_ok(proc: subprocess.Popen[bytes], tmp_path: Path, url: str) -> bool:
    """Whether `url` answers 200; the launcher's last words if it is gone."""
    if proc.poll() is not None:
        raise RuntimeError((tmp_path / "launcher.log").read_text(errors="replace")[-2000:])
    return http_get(url)[0] == 200


async def test_run_serves_a_prompt_and_ctrl_c_stops_every_process(launched, tmp_path):
    proc, env, names = launched
    base = f"http://127.0.0.1:{env['ENVOY_PORT']}"  # the one URL: Envoy in front of all
    eventually(lambda: healthz_ok(proc, tmp_path, f"{base}/healthz"), timeout=60, interval=0.1)
    eventually(lambda: f"open       {base}/" in (tmp_path / "launcher.log").read_text())
    pids = {n: int((tmp_path / "run" / f"{n}.pid").read_text()) for n in names}
    assert all(pid_alive(pid) for pid in pids.values())
    assert (
        "auth       a dev token: TOKEN=$(durablechat token"
        in (tmp_path / "launcher.log").read_text()
    )
    frames: list[str] = []
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # secure by default
            await http.ws_connect(f"{base}/ws/t1")
        assert refused.value.status == 401
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws/t1", protocols=dev_token(tmp_path)) as ws,
    ):
        await ws.send_str("hello tokens=5")
        while not frames or frames[-1] != "[DONE]":
            frames.append(await ws.receive_str(timeout=20))
        await ws.send_str("(GET_HISTORY)")
        history = json.loads(await ws.receive_str(timeout=20))
    assert frames[0] == "[LOADING]"
    assert "".join(frames[1:-1]) == "tok0 tok1 tok2 tok3 tok4"
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "hello tokens=5"),
        ("assistant", "tok0 tok1 tok2 tok3 tok4"),
    ]
    assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not list((tmp_path / "run").glob("*.pid"))


@pytest.fixture
def launched_three(tmp_path):
    with running_launcher(tmp_path, 3) as running:
        yield running


async def test_run_restarts_a_killed_pod_while_the_others_take_its_sessions_over(
    launched_three, tmp_path
):
    proc, env = launched_three
    base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    eventually(lambda: healthz_ok(proc, tmp_path, f"{base}/healthz"), timeout=60, interval=0.1)
    owner = HashRing(["session-1", "session-2", "session-3"]).owner("t1")
    pid_file = tmp_path / "run" / f"{owner}.pid"
    killed = int(pid_file.read_text())
    os.kill(killed, signal.SIGKILL)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws/t1", protocols=dev_token(tmp_path)) as ws,
    ):
        await ws.send_str("after the kill tokens=3")
        frames = [await ws.receive_str(timeout=20)]
        while frames[-1] != "[DONE]":
            frames.append(await ws.receive_str(timeout=20))
    assert frames[0] == "[LOADING]" and "".join(frames[1:-1]) == "tok0 tok1 tok2"
    eventually(lambda: int(pid_file.read_text()) != killed and pid_alive(int(pid_file.read_text())))
    assert proc.poll() is None


async def test_run_beyond_loopback_protects_redis_and_turns_the_dev_login_off(tmp_path):
    """`BIND_HOST=0.0.0.0 make run`: the services would refuse to start unprotected, so the
    launcher gives Redis a password and the pods and AI service a cluster secret, and leaves
    the dev login (anyone signs in as anyone) off."""
    with running_launcher(tmp_path, 1, {"BIND_HOST": "0.0.0.0"}) as (proc, env):
        base = f"http://127.0.0.1:{env['ENVOY_PORT']}"
        eventually(lambda: healthz_ok(proc, tmp_path, f"{base}/healthz"), timeout=60, interval=0.1)
        eventually(lambda: "dev login is off" in (tmp_path / "launcher.log").read_text())
        anonymous = redis.Redis(port=int(env["REDIS_PORT"]), socket_timeout=5)
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/me") as me:
                assert (await me.json())["devLogin"] is False
            async with http.post(f"{base}/api/login", json={"user": "ann"}) as login:
                assert login.status == 404
            async with http.ws_connect(f"{base}/ws/t1", protocols=dev_token(tmp_path)) as ws:
                await ws.send_str("hello tokens=2")
                frames: list[str] = []
                while not frames or frames[-1] != "[DONE]":
                    frames.append(await ws.receive_str(timeout=20))
        assert "".join(frames[1:-1]) == "tok0 tok1"


async def test_model_local_streams_a_real_models_answer(tmp_path):
    """`MODEL=local make run`: SmolLM2-135M on llama-server in place of the dev model, on the
    same port; a WebSocket prompt gets a real (not tokN) answer, stored like any other."""
    require_llama()
    with running_launcher(tmp_path, 1, {"MODEL": "local"}) as (proc, env):
        base = f"http://127.0.0.1:{env['ENVOY_PORT']}"
        eventually(lambda: healthz_ok(proc, tmp_path, f"{base}/healthz"), timeout=90, interval=0.1)
        eventually(lambda: "MODEL=local" in (tmp_path / "launcher.log").read_text())
        health = http_get(f"http://127.0.0.1:{env['DEV_MODEL_PORT']}/health")
        assert health[0] == 200  # llama-server's own endpoint: the dev model has /healthz
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{base}/ws/t1", protocols=dev_token(tmp_path)) as ws,
        ):
            await ws.send_str("What is the capital of France? One word.")
            frames: list[str] = []
            while not frames or frames[-1] != "[DONE]":
                frames.append(await ws.receive_str(timeout=60))
            await ws.send_str("(GET_HISTORY)")
            history = json.loads(await ws.receive_str(timeout=20))
        answer = "".join(frames[1:-1])
        print(f"\nMODEL=local answered {answer!r} in {len(frames) - 2} frames")
        assert frames[0] == "[LOADING]" and not any(f.startswith("[ERROR]") for f in frames)
        assert answer.strip() and "tok0" not in answer
        assert history[-1]["role"] == "assistant" and history[-1]["content"] == answer


def test_model_must_be_dev_or_local(tmp_path):
    env = launcher_env(tmp_path) | {"MODEL": "gpt-5"}
    done = subprocess.run([sys.executable, "-m", "deploy.run_local"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "MODEL must be one of dev, local (got 'gpt-5')" in done.stderr
    assert not (tmp_path / "run" / "redis.pid").exists()
