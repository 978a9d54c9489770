"""A real multi-node Ray cluster on this machine, for tests.

Each node is `ray start --block` in its own process, so every process of the node (GCS, raylet,
dashboard, workers) descends from one process this helper owns; nodes are stopped by killing
exactly those processes, by their ids. Nodes get their own ports and temp directory, and the
cluster uses token authentication (Ray's default for `ray start`) with RAY_AUTH_MODE=token and a
token of its own in RAY_AUTH_TOKEN (in `env`, for the processes that join it): a fresh machine has
no ~/.ray/auth_token, and the user's is not the tests' to use.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from process_tree import ProcessTree

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 180, process: Optional[subprocess.Popen] = None) -> None:
    """Until something listens on `port`: at most `timeout` seconds (a head's dashboard on 2 loaded
    cores has taken over 90), or until `process`, the one that should listen, has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process that should listen on port {port} ended with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class Node:
    def __init__(self, command: list[str], env: dict, cwd: Optional[Path], log: Path):
        self.log = open(log, "w")
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.tree = ProcessTree(self.process.pid)

    def kill(self) -> None:
        self.tree.remember()
        self.tree.kill()
        self.log.close()


class LocalCluster:
    def __init__(self, head_cpus: int = 1, dashboard: bool = False, env: Optional[dict] = None, own_homes: bool = False):
        """`env`: variables the nodes, and so their workers, start with (e.g. TILTSWEEP_FAULTS).
        `own_homes`: each node, like a machine of its own, starts in a home folder of its own
        (HOME, its working directory, its caches), so that the nodes share no directory."""
        self.temp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths have a length limit
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.own_homes = own_homes
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[Node] = []
        command = [
            RAY, "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={head_cpus}",
            "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp}", f"--include-dashboard={str(dashboard).lower()}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}", *self.agent_ports(),
        ]
        self.nodes.append(Node(command, *self.home(), self.temp / "head.log"))
        try:
            wait_for_port(self.dashboard_port if dashboard else self.port, process=self.nodes[0].process)
            if dashboard:
                self.wait_for_job_server()
        except BaseException:
            self.shutdown()
            raise

    def agent_ports(self) -> list[str]:
        return [
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        ]

    def add_node(self, cpus: int) -> Node:
        command = [
            RAY, "start", "--block", f"--address={self.address}", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
            *self.agent_ports(),
        ]
        node = Node(command, *self.home(), self.temp / f"node-{len(self.nodes)}.log")
        self.nodes.append(node)
        return node

    def home(self) -> tuple[dict, Optional[Path]]:
        """(environment, working directory) of the next node, or process: in a home of its own with
        own_homes (no shared compile cache, no shared XDG cache), else the cluster's."""
        if not self.own_homes:
            return self.env, None
        home = Path(tempfile.mkdtemp(prefix="home-", dir=self.temp))
        env = {name: value for name, value in self.env.items() if name not in ("TILTSWEEP_COMPILE_CACHE", "XDG_CACHE_HOME")}
        return {**env, "HOME": str(home)}, home

    def wait_for_cpus(self, cpus: int, timeout: float = 90) -> None:
        code = (
            "import ray; ray.init(address='%s', logging_level='ERROR'); "
            "print(int(ray.cluster_resources().get('CPU', 0)))" % self.address
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True).stdout
            if out.strip().splitlines()[-1:] == [str(cpus)]:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster never had {cpus} CPUs")

    def wait_for_job_server(self, timeout: float = 180) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers (401 without a token): it is up
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("the job server never answered")

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
