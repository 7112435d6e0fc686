"""The topology's replica list drives pgbouncer, the app and PostgreSQL for 0, 1 or 2 replicas.

The roles' own templates, defaults and the topology (ansible/group_vars/all) are rendered on
this machine for inventories of each size; no fleet is needed.
"""

import subprocess

import pytest
import yaml

from capacity import model
from loadtests.fleet import ROOT, topology

ROLES = ROOT / "ansible" / "roles"
TOPOLOGY = topology()
APP_PASSWORD = "p:w@/x"  # noqa: S105 (a fake, with characters a URL must encode)
VAULT_NAMES = (
    "django_secret_key",
    "redis_cache_password",
    "redis_sessions_password",
    "redis_admin_password",
    "s3_secret_key",
)


def _inventory(replicas: int) -> dict:
    def hosts(names):
        return {"hosts": {name: {"tally_address": f"10.9.0.{n}"} for name, n in names}}

    return {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "/usr/bin/python3",
                "vault_postgres_app_password": APP_PASSWORD,
                **{f"vault_{name}": "secret" for name in VAULT_NAMES},
                "tally_site_hosts": ["localhost"],
                "tally_static_bucket": "static",
            },
            "children": {
                "lb": hosts([("lb1", 10)]),
                "web": hosts([("web1", 21)]),
                "cache": hosts([("cache1", 41)]),
                "db": {
                    "children": {
                        "db_primary": hosts([("db1", 31)]),
                        "db_replica": hosts([(f"DB-{n}", 30 + n) for n in range(2, 2 + replicas)]),
                    }
                },
            },
        }
    }


def _sizing() -> dict:
    """The role variables the capacity model owns, for the local environment: what `make
    provision` writes to capacity.generated.yml, since the roles have no default for them."""
    return model.evaluate(model.load("local")).ansible_vars()


def _render(tmp_path, replicas: int) -> dict[str, str]:
    """pgbouncer.ini and the app's TALLY_REPLICA_URLS for web1; pg_hba.conf and the slots
    for db1."""
    out = tmp_path / f"out{replicas}"
    topology = str(ROOT / "ansible/group_vars/all/topology.yml")
    playbook = [
        {
            "name": "Render the web host's files",
            "hosts": "web1",
            "gather_facts": False,
            "vars_files": [
                topology,
                str(ROLES / "pgbouncer/defaults/main.yml"),
                str(ROLES / "app/defaults/main.yml"),
                str(ROLES / "app/vars/main.yml"),
            ],
            "vars": _sizing(),
            "tasks": [
                {
                    "name": "Render pgbouncer.ini",
                    "ansible.builtin.template": {
                        "src": str(ROOT / "pgbouncer/pgbouncer.ini.j2"),
                        "dest": f"{out}/pgbouncer.ini",
                        "mode": "0600",
                    },
                },
                {
                    "name": "Write the replica URLs",
                    "ansible.builtin.copy": {
                        "content": "{{ app_environment.TALLY_REPLICA_URLS }}",
                        "dest": f"{out}/replica_urls",
                        "mode": "0600",
                    },
                },
            ],
        },
        {
            "name": "Render the primary's files",
            "hosts": "db1",
            "gather_facts": False,
            "vars_files": [
                topology,
                str(ROLES / "postgresql/defaults/main.yml"),
                str(ROLES / "postgresql/vars/main.yml"),
            ],
            "tasks": [
                {
                    "name": "Render pg_hba.conf",
                    "ansible.builtin.template": {
                        "src": str(ROLES / "postgresql/templates/pg_hba.conf.j2"),
                        "dest": f"{out}/pg_hba.conf",
                        "mode": "0600",
                    },
                },
                {
                    "name": "Write the slots",
                    "ansible.builtin.copy": {
                        "content": "{{ postgresql_replicas | map(attribute='name') | join(',') }}",
                        "dest": f"{out}/slots",
                        "mode": "0600",
                    },
                },
            ],
        },
    ]
    out.mkdir()
    (tmp_path / f"inventory{replicas}.yml").write_text(yaml.safe_dump(_inventory(replicas)))
    (tmp_path / f"render{replicas}.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    run = subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-playbook"),
            "-i",
            str(tmp_path / f"inventory{replicas}.yml"),
            str(tmp_path / f"render{replicas}.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {path.name: path.read_text() for path in out.iterdir()}


@pytest.mark.parametrize("replicas", [0, 1, 2])
def test_each_replica_gets_a_slot_a_pgbouncer_entry_and_an_app_alias(tmp_path, replicas):
    files = _render(tmp_path, replicas)
    names = [f"db_{n}" for n in range(2, 2 + replicas)]  # DB-2 -> db_2
    databases = files["pgbouncer.ini"].split("[databases]")[1].split("[pgbouncer]")[0]
    entries = [line.split(" = ")[0] for line in databases.splitlines() if line.strip()]
    db, user = TOPOLOGY["tally_database"], TOPOLOGY["tally_users"]["database"]
    ports = TOPOLOGY["tally_ports"]
    assert entries == [db, *(f"{db}_{name}" for name in names)]
    assert f"{db} = host=10.9.0.31 port={ports['postgresql']} dbname={db}" in databases
    for n in range(2, 2 + replicas):
        server = f"host=10.9.0.{30 + n} port={ports['postgresql']} dbname={db}"
        assert f"{db}_db_{n} = {server}" in databases
    urls = files["replica_urls"]
    pairs = [item.split("=", 1) for item in urls.split(",")] if urls else []
    assert [name for name, _ in pairs] == names
    for (_, url), name in zip(pairs, names, strict=True):
        # The app's user and URL-encoded password, through the local pgbouncer's entry.
        assert url == f"postgres://{user}:p%3Aw%40%2Fx@127.0.0.1:{ports['pgbouncer']}/{db}_{name}"
    assert files["slots"] == ",".join(names)
    # Rendered for the primary: every other database host may stream from it and read what
    # pg_rewind needs, since any of them may be its replica after a switchover.
    rules = [line.split() for line in files["pg_hba.conf"].splitlines()]
    replicas_addresses = [f"10.9.0.{30 + n}/32" for n in range(2, 2 + replicas)]
    replication_user = TOPOLOGY["tally_users"]["replication"]
    for database in ("replication", "postgres"):
        granted = [f[3] for f in rules if f[1:3] == [database, replication_user]]
        assert granted == replicas_addresses, database


def _hosts_with_vars(tree: dict) -> dict:
    """Every host of a YAML inventory with its variables, whatever its group."""
    found = {}

    def walk(body):
        body = body or {}
        found.update({host: hvars for host, hvars in (body.get("hosts") or {}).items()})
        for child in (body.get("children") or {}).values():
            walk(child)

    walk(tree["all"])
    return found


def test_the_e2e_fleet_has_the_local_fleets_hosts():
    """deploy/test keeps an inventory of its own (a switchover in the e2e test rewrites which
    host is the primary there, never in the local fleet's), with the same hosts."""
    deploy = ROOT / "deploy"
    local, test = (
        yaml.safe_load((deploy / env / "inventory.yml").read_text()) for env in ("local", "test")
    )
    assert _hosts_with_vars(test) == _hosts_with_vars(local)
