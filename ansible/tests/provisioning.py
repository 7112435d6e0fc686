"""Run `make` targets at the repository root and read what Ansible reported."""

import json
import re
import subprocess
import time
from dataclasses import dataclass

from loadtests.fleet import ROOT


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

    def report(self, chars=6000):
        """What a failed run's assertion shows: every failed task's header and its error (a
        provision's end alone is its recap, which names the host but not the task), then the
        output's end."""
        failures, task = [], None
        lines = self.output.splitlines()
        for number, line in enumerate(lines):
            if line.startswith("TASK ["):
                task = line
            elif line.startswith(("fatal: [", "failed: [")):
                failures += [task or "", *lines[number : number + 12], ""]
        return "\n".join([*failures[-200:], "...", self.output[-chars:]])


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


def check_drill(summary: dict, name: str) -> None:
    """A drill of loadtests/drills.py ran to its end and passed every verdict (its figures are
    printed for the log)."""
    result = summary["drills"][name]
    assert "error" not in result, f"{name}: {result.get('error')}"
    print(name, json.dumps(result["figures"], sort_keys=True))
    failed = [f"{v['name']}: {v['measured']}" for v in result["verdicts"] if not v["passed"]]
    assert not failed, f"{name}: " + "; ".join(failed)
