"""Drive and inspect a provisioned fleet: make targets, docker exec, HTML forms over HTTPS."""

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One finished command: its output, exit code and wall time."""

    returncode: int
    output: str
    seconds: float

    def recap(self):
        """Ansible's PLAY RECAP as {host: {counter: value}}."""
        totals = {}
        for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.output, re.MULTILINE):
            totals[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
        return totals

    def changed_tasks(self):
        """(task, host) for every task that reported a change."""
        task, changes = None, []
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                task = line[6 : line.rindex("]")]
            elif line.startswith("changed: ["):
                changes.append((task, line[10 : line.index("]")]))
        return changes


def make(*args, env=None, timeout=3600):
    """Run `make ARGS` at the repository root and return the finished Run."""
    started = time.monotonic()
    result = subprocess.run(
        ["make", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


@dataclass
class Fleet:
    """A provisioned local fleet, reached through docker exec and its published HTTPS port."""

    name: str
    https_port: int
    http_port: int
    ca: Path
    runs: dict = field(default_factory=dict)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.https_port}"

    def run(self, host, *command, env=None):
        """Run a command on a host; returns the CompletedProcess."""
        env_args = [arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")]
        return subprocess.run(
            ["docker", "exec", *env_args, f"{self.name}-{host}", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def exec(self, host, *command, env=None):
        """Run a command on a host that must succeed; returns its stdout."""
        result = self.run(host, *command, env=env)
        if result.returncode:
            raise AssertionError(f"{host}: {command} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def sql(self, host, query):
        """Run SQL in the app's database as the postgres superuser; returns rows of text."""
        out = self.exec(
            host, "runuser", "-u", "postgres", "--", "psql", "-d", "tally", "-XAtc", query
        )
        return [line.split("|") for line in out.splitlines() if line]

    def connects(self, source, target, port):
        """Whether `source` can open a TCP connection to `target`:`port` within two seconds."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({target!r}, {port}), 2).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run(source, "python3", "-c", probe).returncode == 0
