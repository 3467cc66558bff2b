"""A route to a TCP server that a test can partition the way a network does: packets vanish, no
connection is refused or reset, so only the client's own timeouts can notice.

The client connects to an address inside a network namespace of the test's own (a veth pair
away); a proxy there forwards, back over the pair, to a proxy in front of the real server.
`partition()` takes the pair down. Needs root (CAP_NET_ADMIN), as the CI machine has.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys

from tests.support import ROOT
from tests.support.services import missing, wait_until
from tests.support.tcp_proxy import TcpProxy


class PartitionableRoute:
    def __init__(self, target_host: str, target_port: int) -> None:
        tag = secrets.token_hex(3)
        self.namespace, self.outer, inner = f"gw{tag}", f"gw{tag}o", f"gw{tag}i"
        net = f"10.213.{secrets.randbelow(250) + 1}"
        self.outer_ip, self.host, self.port = f"{net}.1", f"{net}.2", 5432
        try:
            for command in (
                f"ip netns add {self.namespace}",
                f"ip link add {self.outer} type veth peer name {inner}",
                f"ip link set {inner} netns {self.namespace}",
                f"ip addr add {self.outer_ip}/30 dev {self.outer}",
                f"ip link set {self.outer} up",
                f"ip netns exec {self.namespace} ip addr add {self.host}/30 dev {inner}",
                f"ip netns exec {self.namespace} ip link set {inner} up",
            ):
                subprocess.run(command.split(), check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as error:
            self._remove_links()
            detail = getattr(error, "stderr", "") or error
            missing("a network namespace (ip netns, veth; needs root)", RuntimeError(str(detail).strip()))
        self._back = TcpProxy(target_host, target_port, host=self.outer_ip).start()
        self._inside = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "tests.support.tcp_proxy",
             self.host, str(self.port), self.outer_ip, str(self._back.port)],
            cwd=ROOT,
        )  # fmt: skip
        try:
            wait_until(self._accepts, timeout=10, message="the proxy in the namespace never listened")
        except AssertionError:
            self.close()
            raise

    def _accepts(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def partition(self) -> None:
        """Take the link down: from now on every packet either way is lost."""
        subprocess.run(["ip", "link", "set", self.outer, "down"], check=True)

    def close(self) -> None:
        if getattr(self, "_inside", None) is not None:
            self._inside.kill()
            self._inside.wait()
        if getattr(self, "_back", None) is not None:
            self._back.cut()
        self._remove_links()

    def _remove_links(self) -> None:
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
