"""A provisioned fleet as the end-to-end tests, the load tests and the bench reach it.

Ports, users and names come from the topology the roles read (ansible/group_vars/all), hosts
and groups from deploy/ENV/inventory.yml, the fleet's name and published ports from
deploy/ENV/group_vars. Local environments (those with a `fleet_name`) are containers on this
machine, reached with `docker exec`. A secret never goes on a command line: `docker exec` gets
only the names of the variables, and the docker client copies their values from its own
environment; SQL and scripts go on stdin.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "ansible" / "group_vars" / "all"
# A whole Jinja reference to a variable, as role defaults and the topology write them.
REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


class FleetError(RuntimeError):
    """A command on a host failed."""


def _merged(folder: Path) -> dict:
    """The plain (non-vault) YAML files of a group_vars folder, merged in file order."""
    merged: dict = {}
    for path in sorted(folder.glob("*.yml")):
        if path.name != "vault.yml":
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def topology() -> dict:
    """The topology every environment shares: tally_ports, tally_users, tally_database, ..."""
    return _merged(TOPOLOGY)


def settings(env: str) -> dict:
    """The plain group_vars/all of deploy/ENV."""
    return _merged(ROOT / "deploy" / env / "group_vars" / "all")


def role_defaults() -> dict:
    """Every role's defaults, as the roles declare them (unrendered)."""
    merged: dict = {}
    for path in sorted((ROOT / "ansible" / "roles").glob("*/defaults/main.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def inventory_groups(path: Path) -> dict[str, list[str]]:
    """Every group of an Ansible YAML inventory with its hosts (children's included), in
    inventory order."""
    groups: dict[str, list[str]] = {}

    def walk(name: str, group: dict | None) -> list[str]:
        group = group or {}
        hosts = list(group.get("hosts") or {})
        for child, body in (group.get("children") or {}).items():
            hosts += walk(child, body)
        groups[name] = list(dict.fromkeys(groups.get(name, []) + hosts))
        return groups[name]

    walk("all", yaml.safe_load(path.read_text())["all"])
    return groups


def resolve(value, scope: dict):
    """`value` with its references to plain variables of `scope` filled in ("{{ a.b }}" alone
    keeps the referenced value's type). Expressions with filters are left as they are."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match):
        node = scope
        for part in match.group(1).split("."):
            node = node[part]
        return resolve(node, scope)

    whole = REFERENCE.fullmatch(value.strip())
    if whole:
        return lookup(whole)
    return REFERENCE.sub(lambda match: str(lookup(match)), value)


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


def replica_name(host: str) -> str:
    """A replica's name in its slot, pgbouncer entry and app alias (tally_db_replicas)."""
    return re.sub(r"[^a-z0-9_]", "_", host.lower())


@dataclass(frozen=True)
class Fleet:
    env: str
    name: str  # container name prefix
    https_port: int
    http_port: int
    groups: dict[str, list[str]]
    values: dict  # role defaults, the environment's group_vars, then the topology
    runs: dict = field(default_factory=dict, compare=False)  # provisions the e2e fixture ran

    @classmethod
    def of(cls, env: str) -> Fleet:
        values = settings(env)
        if "fleet_name" not in values:
            raise SystemExit(
                f"ENV={env} is not a local fleet (no fleet_name in deploy/{env}/group_vars): "
                "the load tests and the e2e tests drive local fleets; see loadtests/README.md."
            )
        groups = inventory_groups(ROOT / "deploy" / env / "inventory.yml")
        # Ansible's order: a playbook's group_vars/all outranks the inventory's.
        merged = {**role_defaults(), **values, **topology()}
        return cls(
            env,
            values["fleet_name"],
            int(values["fleet_https_port"]),
            int(values["fleet_http_port"]),
            groups,
            merged,
        )

    # --- The topology ---------------------------------------------------------------------

    def reload_inventory(self) -> None:
        """Read the inventory's groups again: a switchover rewrites which host is the primary."""
        self.groups.clear()
        self.groups.update(inventory_groups(ROOT / "deploy" / self.env / "inventory.yml"))

    def setting(self, name: str):
        """A role variable or topology value, with plain references filled in. One that is not
        known yet is looked up again: `make provision` writes the capacity model's values
        (capacity.generated.yml) after a fleet of a fresh clone was first described."""
        if name not in self.values:
            self.values.update({**settings(self.env), **topology()})
        return resolve(self.values[name], self.values)

    def port(self, service: str) -> int:
        """A service's port on its hosts: tally_ports[service]."""
        return int(self.values["tally_ports"][service])

    def user(self, service: str) -> str:
        """The user a service logs in as: tally_users[service]."""
        return self.values["tally_users"][service]

    @property
    def database(self) -> str:
        return self.values["tally_database"]

    def replicas(self) -> list[dict[str, str]]:
        """Each replica as {host, name, database}, like tally_db_replicas, and `alias`, the
        app's name for it (app/routing/aliases.py, the keys of /readyz's replicas)."""
        names = {host: replica_name(host) for host in self.groups.get("db_replica", [])}
        return [
            {
                "host": host,
                "name": name,
                "database": f"{self.database}_{name}",
                "alias": f"replica_{name}",
            }
            for host, name in names.items()
        ]

    def hosts(self, group: str) -> list[str]:
        return sorted(self.groups.get(group, ()))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca(self) -> Path:
        return ROOT / "build" / self.env / "ca" / "ca.crt"

    @property
    def ssh_dir(self) -> Path:
        """The environment's SSH key and known_hosts (tally_ssh_dir), which Ansible logs in with."""
        scope = {**self.values, "playbook_dir": str(ROOT / "ansible")}
        return Path(resolve(self.values["tally_ssh_dir"], scope)).resolve()

    def container(self, host: str) -> str:
        return f"{self.name}-{host}"

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

    # --- Commands on the hosts ------------------------------------------------------------

    def command(self, host: str, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        """argv to run a command on `host` (stdin attached). Only the names of `env` are on the
        command line: docker copies their values from its own environment (see environ())."""
        names = [f"--env={key}" for key in env or {}]
        return ["docker", "exec", "-i", *names, self.container(host), *argv]

    @staticmethod
    def environ(env: dict[str, str] | None) -> dict[str, str]:
        """The environment for the docker client of command(..., env=env)."""
        return {**os.environ, **(env or {})}

    def run(
        self, host: str, *argv: str, stdin: str | None = None, env=None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a command on a host, whatever its exit status."""
        return subprocess.run(
            self.command(host, *argv, env=env),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.environ(env),
            timeout=timeout,
            check=False,
        )

    def exec(self, host: str, *argv: str, stdin: str | None = None, env=None) -> str:
        """Run a command on a host that must succeed; returns its stdout."""
        result = self.run(host, *argv, stdin=stdin, env=env)
        if result.returncode:
            raise FleetError(
                f"{host}: {' '.join(argv[:3])}... failed: {result.stdout}{result.stderr}".strip()
            )
        return result.stdout

    def gunicorn(self) -> str:
        """The gunicorn the app role installs on the web hosts."""
        return f"{self.setting('tally_app_venv')}/bin/gunicorn"

    def gunicorn_workers(self, host: str) -> int:
        """Worker processes gunicorn runs on a web host now: its processes less the arbiter
        (workers are forks of it, with the same command line)."""
        found = self.run(host, "pgrep", "-c", "-f", f"^[^ ]*python[^ ]* {self.gunicorn()} ")
        return max(0, int(found.stdout.strip() or 0) - 1)

    def psql(self, host: str, sql: str, database: str | None = None) -> str:
        """Run SQL (from stdin, so COPY ... FROM STDIN works) as postgres on a database host."""
        argv = ("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1")
        return self.exec(host, *argv, "-d", database or self.database, stdin=sql)

    def sql(self, host: str, query: str, database: str | None = None) -> list[list[str]]:
        """Rows of a query run as postgres on a database host, each a list of text fields."""
        out = self.psql(host, query, database)
        return [line.split("|") for line in out.splitlines() if line]

    def backup_host(self) -> str:
        """The host whose timers take the base backups (postgresql_backup_host): the first
        replica, or the primary when there is none."""
        return [*self.groups.get("db_replica", ()), *self.groups["db_primary"]][0]

    def pgbackrest(
        self, host: str, *argv: str, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """Run pgBackRest as postgres on a database host, on the fleet's stanza."""
        stanza = f"--stanza={self.setting('postgresql_backup_stanza')}"
        return self.run(
            host, "runuser", "-u", "postgres", "--", "pgbackrest", stanza, *argv, timeout=timeout
        )

    def pgbouncer_psql(self) -> tuple[str, ...]:
        """psql on pgbouncer's console as its stats user, from the web host itself; the
        password comes in PGPASSWORD."""
        return (
            *("psql", "-XAq", "-h", "127.0.0.1", "-p", str(self.port("pgbouncer"))),
            *("-U", self.user("pgbouncer_stats"), "-P", "footer=off", "pgbouncer"),
        )

    def pgbouncer(self, host: str, command: str, password: str) -> list[dict[str, str]]:
        """Rows of a pgbouncer console command (SHOW STATS, SHOW POOLS) on a web host."""
        argv = (*self.pgbouncer_psql(), "-c", command)
        output = self.exec(host, *argv, env={"PGPASSWORD": password})
        header, *rows = (line.split("|") for line in output.splitlines())
        return [dict(zip(header, row, strict=False)) for row in rows]

    def connects(self, source: str, target: str, port: int) -> bool:
        """Whether `source` can open a TCP connection to `target`:`port` within two seconds."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({target!r}, {int(port)}), 2).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run(source, "python3", "-", stdin=probe).returncode == 0


def report_folder(env: str, kind: str, given: Path | None = None, suffix: str = "") -> Path:
    """Where a run's report goes: `given`, or build/ENV/KIND/<time><suffix>, made if missing."""
    out = given or ROOT / "build" / env / kind / f"{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    return out
