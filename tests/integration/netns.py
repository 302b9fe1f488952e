"""Hosts on one machine: network namespaces wired to one switch, links that can be cut.

Each host is a network namespace with one veth link to a bridge that lives in a
namespace of its own (the "switch"): the root namespace's firewall (Docker sets
its FORWARD policy to DROP) never sees the traffic between hosts. The test
process itself joins the switch as the client host, so it reaches every host's
address directly. Everything is named after this process's pid, and
:meth:`Network.destroy` removes it all, processes left inside included.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

BASE_NETWORK = "10.213.0.0/16"  # this test's own range: one /24 per network
CLIENT_HOST = 1  # the root namespace's address in each /24 (hosts take .2, .3, ...)
IP_TIMEOUT_S = 10.0


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no `ip`, or the kernel refuses)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; a failure raises with ip's own message."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why no namespace can be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "no `ip` command (install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (run as root or with CAP_NET_ADMIN)"
    probe = f"csprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def _used_subnets() -> set[str]:
    out = ip("-o", "-4", "addr", "show").stdout
    return {
        str(ipaddress.ip_interface(part).network)
        for line in out.splitlines()
        for part in line.split()
        if "/" in part and part[0].isdigit()
    }


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 of BASE_NETWORK that no interface of this machine uses (two runs never share)."""
    subnets = list(ipaddress.ip_network(BASE_NETWORK).subnets(new_prefix=24))
    used = _used_subnets()
    for offset in range(len(subnets)):
        candidate = subnets[(seed + offset) % len(subnets)]
        if str(candidate) not in used:
            return candidate
    raise NetnsUnavailable(f"every /24 of {BASE_NETWORK} is in use")


@dataclass
class Host:
    """One namespace: its address on the switch and the switch port its link plugs into."""

    namespace: str
    address: str
    port: str  # the veth end on the switch: down = the host's cable pulled

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (same pid space and files; own network)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Network:
    """A switch, the client link from the root namespace, and hosts added one by one."""

    tag: str = field(default_factory=lambda: f"cs{os.getpid()}")
    subnet: ipaddress.IPv4Network = field(default_factory=lambda: free_subnet(os.getpid()))
    hosts: dict[str, Host] = field(default_factory=dict)
    _links: list[str] = field(default_factory=list)  # root-namespace links to delete

    @property
    def switch(self) -> str:
        return f"{self.tag}-switch"

    @property
    def client_address(self) -> str:
        return str(self.subnet[CLIENT_HOST])

    def create(self) -> Network:
        """The switch namespace with its bridge, and the root namespace plugged into it."""
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        client, port = f"{self.tag}c", f"{self.tag}cp"
        self._plug(client, port)
        self._links.append(client)
        ip("addr", "add", f"{self.client_address}/{self.subnet.prefixlen}", "dev", client)
        ip("link", "set", client, "up")
        return self

    def _plug(self, end: str, port: str) -> None:
        """A veth pair: ``end`` stays where it is, ``port`` goes onto the switch's bridge."""
        ip("link", "add", end, "type", "veth", "peer", "name", port)
        ip("link", "set", port, "netns", self.switch)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")

    def add_host(self, label: str) -> Host:
        """A new namespace on the switch with the next free address, lo and eth0 up."""
        number = len(self.hosts) + 1
        namespace = f"{self.tag}-{label}"
        address = str(self.subnet[CLIENT_HOST + number])
        end, port = f"{self.tag}h{number}", f"{self.tag}p{number}"
        ip("netns", "add", namespace)
        host = Host(namespace, address, port)
        self.hosts[label] = host
        self._plug(end, port)
        ip("link", "set", end, "netns", namespace)
        ip("-n", namespace, "link", "set", end, "name", "eth0")
        ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its packets go nowhere, nobody tells its sockets."""
        ip("-n", self.switch, "link", "set", host.port, "down")

    def reconnect(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.port, "up")

    def destroy(self) -> None:
        """Kill what still runs inside the hosts, then delete every namespace and link."""
        for host in self.hosts.values():
            pids = ip("netns", "pids", host.namespace, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for namespace in [h.namespace for h in self.hosts.values()] + [self.switch]:
            ip("netns", "del", namespace, check=False)
        for link in self._links:
            ip("link", "del", link, check=False)
        self.hosts.clear()
        self._links.clear()
