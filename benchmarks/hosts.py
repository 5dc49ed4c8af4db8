"""Hosts on one machine: a network namespace each, joined by veth pairs to a bridge.

Each host gets a namespace with its own loopback and one interface, `eth0`, whose
veth peer is a port of a bridge the harness creates; the bridge has an address too,
so the process running the harness (a test, the benchmark) reaches every host as a
client on another machine would. `cut(name)` partitions a host: a blackhole queue
discipline on both ends of its veth drops every packet either way, and TCP sees
silence, not a reset (as with a pulled cable). `heal(name)` removes them.

Everything made here is named with a tag of this run and removed by `close()`,
including any process left in a namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time


class HostsUnavailable(Exception):
    """This machine does not let the harness make namespaces (not root, no iproute2)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    probe = f"aqprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:  # a partition is a blackhole queue discipline: the kernel must have it
        cut = subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo",
                              "root", "blackhole"], capture_output=True, text=True, timeout=30)
        if cut.returncode != 0:
            return f"tc cannot add a blackhole qdisc: {cut.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class Hosts:
    def __init__(self, names: list[str]) -> None:
        why = unavailable()
        if why is not None:
            raise HostsUnavailable(why)
        salt = int.from_bytes(os.urandom(2), "big")
        self.tag = f"aq{salt:04x}"  # interface names have 15 characters at most
        self.subnet = f"10.{200 + salt % 50}.{salt % 250}"
        self.bridge = f"{self.tag}br"
        self.names = list(names)
        self.made_ns: list[str] = []
        self.made_links: list[str] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.made_links.append(self.bridge)
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                self._add(i, name)
        except BaseException:
            self.close()
            raise

    def _add(self, i: int, name: str) -> None:
        ns, port = self.ns(name), self._port(name)
        _ip("netns", "add", ns)
        self.made_ns.append(ns)
        _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.made_links.append(port)
        _ip("link", "set", port, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{self.subnet}.{i + 1}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def _port(self, name: str) -> str:
        return f"{self.tag}v{self.names.index(name)}"

    def ip(self, name: str) -> str:
        return f"{self.subnet}.{self.names.index(name) + 1}"

    @property
    def gateway_ip(self) -> str:
        """The harness's own address on the hosts' network."""
        return f"{self.subnet}.254"

    def cut(self, name: str) -> None:
        """Partition the host: nothing in, nothing out, no reset."""
        subprocess.run(["tc", "qdisc", "add", "dev", self._port(name), "root", "blackhole"],
                       check=True, capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", self.ns(name), "tc", "qdisc", "add", "dev",
                        "eth0", "root", "blackhole"], check=True, capture_output=True,
                       timeout=30)

    def heal(self, name: str) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", self._port(name), "root"],
                       capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", self.ns(name), "tc", "qdisc", "del", "dev",
                        "eth0", "root"], capture_output=True, timeout=30)

    def kill_all(self, name: str) -> None:
        """SIGKILL every process in the host's namespace: the machine died."""
        pids = _ip("netns", "pids", self.ns(name), check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def close(self) -> None:
        for ns in self.made_ns:
            for _ in range(50):  # bounded: a process may take a moment to die
                pids = _ip("netns", "pids", ns, check=False).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                time.sleep(0.02)
            _ip("netns", "del", ns, check=False)
        for link in reversed(self.made_links):
            _ip("link", "del", link, check=False)
        self.made_ns, self.made_links = [], []

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
