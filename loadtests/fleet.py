"""The fleet under load: its hosts by group, how to run a command on one, its secrets.

Local environments (those with a `fleet_name`) are containers on this machine, reached with
`docker exec`; that is what `make loadtest` drives.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from capacity.model import inventory_groups

ROOT = Path(__file__).resolve().parent.parent
# pgbouncer's console as its stats user (pgbouncer_stats_user), from the web host itself;
# the password comes in PGPASSWORD.
PGBOUNCER_PSQL = (
    *("psql", "-XAq", "-h", "127.0.0.1", "-p", "6432"),
    *("-U", "tally_stats", "-P", "footer=off", "pgbouncer"),
)


def settings(env: str) -> dict:
    """The plain (non-vault) group_vars/all of deploy/ENV, merged in file order."""
    merged: dict = {}
    for path in sorted((ROOT / "deploy" / env / "group_vars" / "all").glob("*.yml")):
        if path.name != "vault.yml":
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def vault(env: str) -> dict:
    """The decrypted vault of deploy/ENV (for reading, never printed)."""
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


@dataclass(frozen=True)
class Fleet:
    env: str
    name: str  # container name prefix
    https_port: int
    groups: dict[str, set[str]]

    @classmethod
    def of(cls, env: str) -> Fleet:
        values = settings(env)
        if "fleet_name" not in values:
            raise SystemExit(
                f"ENV={env} is not a local fleet (no fleet_name in deploy/{env}/group_vars): "
                "`make loadtest` drives local fleets; see loadtests/README.md for others."
            )
        groups = inventory_groups(ROOT / "deploy" / env / "inventory.yml")
        return cls(env, values["fleet_name"], int(values["fleet_https_port"]), groups)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca(self) -> Path:
        return ROOT / "build" / self.env / "ca" / "ca.crt"

    def hosts(self, group: str) -> list[str]:
        return sorted(self.groups.get(group, ()))

    def host_vars(self, host: str) -> dict:
        """A host's variables as the inventory file gives them (not templated)."""
        data = yaml.safe_load((ROOT / "deploy" / self.env / "inventory.yml").read_text())
        found: dict = {}

        def walk(group: dict) -> None:
            group = group or {}
            if host in (group.get("hosts") or {}):
                found.update(group["hosts"][host] or {})
            for child in (group.get("children") or {}).values():
                walk(child)

        walk(data["all"])
        return found

    def container(self, host: str) -> str:
        return f"{self.name}-{host}"

    def command(self, host: str, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        """argv to run a command on `host` (stdin attached). Only the names of `env` are on the
        command line: docker copies their values from its own environment (see environ()), so
        a password never shows in a process listing."""
        names = [f"--env={key}" for key in env or {}]
        return ["docker", "exec", "-i", *names, self.container(host), *argv]

    @staticmethod
    def environ(env: dict[str, str] | None) -> dict[str, str]:
        """The environment for the docker client of command(..., env=env)."""
        return {**os.environ, **(env or {})}

    def run(self, host: str, *argv: str, stdin: str | None = None, env=None) -> str:
        result = subprocess.run(
            self.command(host, *argv, env=env),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.environ(env),
        )
        if result.returncode:
            raise RuntimeError(f"{host}: {' '.join(argv[:3])}... failed: {result.stderr.strip()}")
        return result.stdout

    def pgbouncer(self, host: str, command: str, password: str) -> list[dict[str, str]]:
        """Rows of a pgbouncer console command (SHOW STATS, SHOW POOLS) on a web host."""
        output = self.run(host, *PGBOUNCER_PSQL, "-c", command, env={"PGPASSWORD": password})
        header, *rows = (line.split("|") for line in output.splitlines())
        return [dict(zip(header, row, strict=False)) for row in rows]

    def psql(self, host: str, sql: str, database: str = "tally") -> str:
        """Run SQL (from stdin, so COPY ... FROM STDIN works) as postgres on a database host."""
        argv = ("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1")
        return self.run(host, *argv, "-d", database, stdin=sql)
