"""A network namespace joined to the host by a veth pair: a second "host" for partition tests.

The host end gets 10.231.N.1/30, the namespace end 10.231.N.2/30. `cut()` takes the namespace's
link down (a partition of everything inside it), `heal()` brings it back. Needs root and iproute2;
`available()` says whether this machine can do it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Netns:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name = f"dc{tag}"
        self.host_if = f"dch{tag}"
        self.ns_if = f"dcn{tag}"
        subnet = random.randrange(256)
        self.host_ip = f"10.231.{subnet}.1"
        self.ns_ip = f"10.231.{subnet}.2"

    def create(self) -> Netns:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.exec_ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.exec_ip("link", "set", self.ns_if, "up")
        self.exec_ip("link", "set", "lo", "up")
        return self

    def exec_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def argv(self, *command: str) -> list[str]:
        """A command line that runs `command` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        self.exec_ip("link", "set", self.ns_if, "down")

    def heal(self) -> None:
        self.exec_ip("link", "set", self.ns_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
