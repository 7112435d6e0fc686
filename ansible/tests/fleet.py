"""Drive and inspect a provisioned fleet: make targets, docker exec, HTML forms over HTTPS."""

import re
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
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


class Form(HTMLParser):
    """The first <form method=post> of a page: its action and the values a taker would send.

    A taker answers every question: the first option of each radio group and of each set of
    checkboxes, and a short text in every textarea.
    """

    def __init__(self, html):
        super().__init__()
        self.action = None
        self.fields = {}
        self._in_form = False
        self._done = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._done:
            return
        if tag == "form" and attrs.get("method", "").lower() == "post":
            self._in_form, self.action = True, attrs.get("action")
        elif self._in_form and tag == "input" and attrs.get("name"):
            kind, name = attrs.get("type", "text"), attrs["name"]
            if kind in ("radio", "checkbox"):
                self.fields.setdefault(name, attrs.get("value"))
            elif kind != "submit":
                self.fields[name] = attrs.get("value", "")
        elif self._in_form and tag == "textarea" and attrs.get("name"):
            self.fields[attrs["name"]] = "Answered end to end."

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def vault(env):
    """The decrypted vault of deploy/ENV, for the tests' own inspection (never printed)."""
    import yaml

    deploy = ROOT / "deploy" / env
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-vault"),
            "view",
            "--vault-password-file",
            str(deploy / ".vault-password"),
            str(deploy / "group_vars/all/vault.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return yaml.safe_load(result.stdout)
