"""Writes a bench run's results: JSON, a Markdown table (also printed) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

Rows = list[dict[str, Any]]


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.md and the plots under `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.json", out / "results.md"]
    files[0].write_text(json.dumps(results, indent=2) + "\n")
    files[1].write_text(table(results))
    files += plots(results["scenarios"], out)
    return files


def _md(title: str, rows: Rows) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"**{title}**", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"


def _cell(value: Any) -> str:
    """A spread ({"min", "max"}) as `min..max`, anything else as itself."""
    if isinstance(value, dict) and set(value) == {"min", "max"}:
        return f"{value['min']}..{value['max']}"
    return str(value)


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _paced(value: dict[str, Any]) -> Rows:
    """Scenario h's levels, each led by what the run was measured on."""
    note = {"git_sha": value.get("git_sha"), "settings": settings_text(value.get("settings", {}))}
    return [{**row, **note} for row in value.get("levels", [])]


TITLES = {
    "a_prompt_round_trip_ws": "a) prompt round trip over WebSocket (tokens=1, prompt → [DONE])",
    "b_history_ws": "b) (GET_HISTORY) on a 1,000-message thread",
    "c_fan_out_ws": "c) one answer fanned out to N WebSocket subscribers",
    "d_idle_sockets": "d) idle WebSockets: server memory (all our processes)",
    "e_cold_connect_ws": "e) cold thread: connect → prompt → [DONE]",
    "f_kill9_takeover": "f) kill -9 of a session pod under WebSocket chats, REST appends (3 pods)",
    "g_prompt_round_trip_grpc": "g) prompt round trip over gRPC",
    "g_fan_out_grpc": "g) one answer fanned out to N gRPC subscribers (no gateway)",
    "g_fan_out_grpc_web_envoy": "g) one answer to N gRPC-web subscribers via Envoy (the fan-out)",
    "h_paced_answers": "h) N concurrent paced answers, one WebSocket each (CPU: µs per token)",
    "i_rest_appends": "i) REST POST …/messages, one session and user per worker",
    "baseline_redis": "machine: redis-benchmark SET, appendfsync always",
    "baseline_grpc_echo": "machine: bare gRPC unary echo",
}


def table(results: dict[str, Any]) -> str:
    head = (
        f"Bench run {results['started']} at {results['git_sha']} on {results['machine']}, "
        f"configuration {results.get('config_title', '?')}, against "
        f"{results['target']}{' (--quick)' if results['quick'] else ''}.\n"
        f"Settings: {settings_text(results.get('settings', {})) or 'defaults'}.\n\n"
    )
    body = ""
    for key, title in TITLES.items():
        value = results["scenarios"].get(key)
        if value is not None and key == "h_paced_answers":
            body += _md(title, _paced(value))
        elif value is not None:
            body += _md(title, value if isinstance(value, list) else [value])
    fractions = results.get("fractions")
    if fractions:
        body += _md("as a fraction of the machine", [fractions])
    return head + body


def plots(scenarios: dict[str, Any], out: Path) -> list[Path]:
    written = []
    drawings = (
        ("round_trip.png", _round_trip),
        ("fan_out.png", _fan_out),
        ("paced.png", _paced_plot),
    )
    for name, draw in drawings:
        fig = draw(scenarios)
        if fig is not None:
            path = out / name
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written


def _round_trip(scenarios: dict[str, Any]) -> Any:
    fig, (ops, lat) = plt.subplots(1, 2, figsize=(10, 4))
    fig.subplots_adjust(wspace=0.3)
    for key, label in (
        ("a_prompt_round_trip_ws", "WebSocket"),
        ("g_prompt_round_trip_grpc", "gRPC"),
    ):
        rows = scenarios.get(key) or []
        xs = [r["concurrency"] for r in rows]
        ops.plot(xs, [r["ops_per_s"] for r in rows], marker="o", label=label)
        lat.plot(xs, [r["p50_ms"] for r in rows], marker="o", label=f"{label} p50")
        tail = [r.get("p99_ms", r.get("p95_ms", r["max_ms"])) for r in rows]
        lat.plot(xs, tail, marker="x", linestyle="--", label=f"{label} tail (p99/p95/max)")
    for ax, ylabel in ((ops, "round trips / s"), (lat, "ms")):
        ax.set_xscale("log")
        ax.set_xlabel("concurrent sessions")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Durable prompt round trip (tokens=1)")
    return fig


def _fan_out(scenarios: dict[str, Any]) -> Any:
    fig, (rate, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    fig.subplots_adjust(wspace=0.35)
    for key, label in (
        ("c_fan_out_ws", "WebSocket"),
        ("g_fan_out_grpc", "gRPC to the pod"),
        ("g_fan_out_grpc_web_envoy", "gRPC-web via Envoy"),
    ):
        rows = scenarios.get(key) or []
        xs = [r["subscribers"] for r in rows]
        rate.plot(xs, [r["tokens_per_s_delivered"] for r in rows], marker="o", label=label)
        if rows and "owner_cpu_us_per_token" in rows[0]:
            cpu.plot(xs, [r["owner_cpu_us_per_token"] for r in rows], marker="o", label=label)
    rate.set_ylabel("tokens / s delivered (all subscribers)")
    cpu.set_ylabel("owner CPU µs per token")
    for ax in (rate, cpu):
        ax.set_xscale("log")
        ax.set_xlabel("subscribers")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("One answer fanned out")
    return fig


def _paced_plot(scenarios: dict[str, Any]) -> Any:
    rows = (scenarios.get("h_paced_answers") or {}).get("levels") or []
    if not rows:
        return None
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    fig.subplots_adjust(wspace=0.35)
    xs = [r["answers"] for r in rows]
    for what, label, style in (
        ("first_token", "first token", "--"),
        ("gap", "inter-frame gap", ":"),
    ):
        tail = next(t for t in ("p99", "p95", "max") if f"{what}_{t}_ms" in rows[0])
        values = [r.get(f"{what}_{tail}_ms", r[f"{what}_max_ms"]) for r in rows]
        lat.plot(xs, values, marker="o", linestyle=style, label=f"{label} {tail}")
    lat.plot(xs, [r["first_token_p50_ms"] for r in rows], marker="o", label="first token p50")
    for role in ("ai", "session", "gateway", "redis", "search", "model", "client"):
        key = f"cpu_us_per_token_{role}"
        if key in rows[0]:
            cpu.plot(xs, [r[key] for r in rows], marker="o", label=role)
    lat.set_ylabel("ms")
    cpu.set_ylabel("CPU µs per streamed token")
    for ax in (lat, cpu):
        ax.set_xscale("log")
        ax.set_xlabel("concurrent paced answers")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Concurrent paced answers, one WebSocket each")
    return fig
