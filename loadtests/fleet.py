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


def settings(env: str) -> dict:
    """The plain (non-vault) group_vars/all of deploy/ENV, merged in file order."""
    merged: dict = {}
    for path in sorted((ROOT / "deploy" / env / "group_vars" / "all").glob("*.yml")):
        if path.name != "vault.yml":
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def role_defaults() -> dict:
    """Every role's defaults (ports, names) as the roles declare them, unrendered."""
    merged: dict = {}
    for path in sorted((ROOT / "ansible" / "roles").glob("*/defaults/main.yml")):
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
    values: dict  # role defaults, overridden by the environment's group_vars

    @classmethod
    def of(cls, env: str) -> Fleet:
        values = settings(env)
        if "fleet_name" not in values:
            raise SystemExit(
                f"ENV={env} is not a local fleet (no fleet_name in deploy/{env}/group_vars): "
                "`make loadtest` drives local fleets; see loadtests/README.md for others."
            )
        groups = inventory_groups(ROOT / "deploy" / env / "inventory.yml")
        merged = {**role_defaults(), **values}
        return cls(env, values["fleet_name"], int(values["fleet_https_port"]), groups, merged)

    def setting(self, name: str):
        """A port or name the roles use: the environment's value, else the role default."""
        return self.values[name]

    def pgbouncer_psql(self) -> tuple[str, ...]:
        """psql on pgbouncer's console as its stats user, from the web host itself; the
        password comes in PGPASSWORD."""
        return (
            *("psql", "-XAq", "-h", "127.0.0.1", "-p", str(self.setting("pgbouncer_port"))),
            *("-U", self.setting("pgbouncer_stats_user"), "-P", "footer=off", "pgbouncer"),
        )

    def address(self, host: str) -> str:
        """A host's address on the fleet network, as docker assigned it."""
        result = subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                self.container(host),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.split()[0]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca(self) -> Path:
        return ROOT / "build" / self.env / "ca" / "ca.crt"

    def hosts(self, group: str) -> list[str]:
        return sorted(self.groups.get(group, ()))

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
        argv = (*self.pgbouncer_psql(), "-c", command)
        output = self.run(host, *argv, env={"PGPASSWORD": password})
        header, *rows = (line.split("|") for line in output.splitlines())
        return [dict(zip(header, row, strict=False)) for row in rows]

    def psql(self, host: str, sql: str, database: str | None = None) -> str:
        """Run SQL (from stdin, so COPY ... FROM STDIN works) as postgres on a database host."""
        argv = ("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1")
        database = database or self.setting("postgresql_app_database")
        return self.run(host, *argv, "-d", database, stdin=sql)
