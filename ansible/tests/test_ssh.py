"""End to end: Ansible reaches every host over SSH, the path a cloud's VMs are reached by.

It logs in to each host's private address as the deploy user, with the environment's key
(deploy/<env>/.ssh/, generated like the vault) and sudo, and checks each host's key against the
known_hosts file the fleet wrote from inside the host. sshd takes keys only, never root, and only
this machine (the fleet network's gateway) reaches it through the firewall.
"""

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from loadtests.fleet import ROOT

pytestmark = pytest.mark.usefixtures("fleet")


def all_hosts(fleet):
    return sorted({host for hosts in fleet.groups.values() for host in hosts})


def ssh(fleet, host, *argv, user=None, options=(), known_hosts=None):
    """Run `argv` on `host` with plain ssh: the environment's key and known_hosts, no
    multiplexing (so every call makes, and checks, a connection of its own)."""
    keys = fleet.ssh_dir
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlPath=none",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or keys / 'known_hosts'}",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(keys / "id_ed25519"),
            *options,
            f"{user or fleet.user('deploy')}@{fleet.address(host)}",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ansible_ping(fleet, host, *extra_vars):
    """Ansible's own connection to `host`, with the environment's settings (plus `extra_vars`),
    on a connection of its own: JSON of the ping's result, and the exit code."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    no_multiplexing = {"ansible_ssh_args": "-o ControlMaster=no -o ControlPath=none"}
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible"),
        host,
        "-i",
        str(ROOT / "deploy" / fleet.env / "inventory.yml"),
        # The playbooks' group_vars (the topology: the deploy user's name) apply too.
        "--playbook-dir",
        str(ROOT / "ansible"),
        "--vault-password-file",
        str(ROOT / "deploy" / fleet.env / ".vault-password"),
        "-m",
        "ansible.builtin.ping",
        "-e",
        json.dumps(no_multiplexing),
    ]
    for extra in extra_vars:
        argv += ["-e", json.dumps(extra)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


def test_the_deploy_user_logs_in_to_every_host_with_the_key_and_has_sudo(fleet):
    hosts = all_hosts(fleet)
    with ThreadPoolExecutor(len(hosts)) as pool:
        results = dict(
            zip(
                hosts,
                pool.map(lambda h: ssh(fleet, h, "sudo", "-n", "id", "-un"), hosts),
                strict=True,
            )
        )
    failed = {host: r.stderr for host, r in results.items() if r.returncode}
    assert failed == {}
    assert {host: r.stdout.strip() for host, r in results.items()} == dict.fromkeys(hosts, "root")


def test_ansible_checks_each_hosts_key_against_the_fleets_known_hosts(fleet, tmp_path):
    """The environment's own connection settings: a host whose key is not the one docker read
    from inside it is unreachable, and the same call with the fleet's file reaches it."""
    host = fleet.hosts("db_primary")[0]
    code, output = ansible_ping(fleet, host)
    assert code == 0, output
    assert '"ping": "pong"' in output

    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{fleet.address(host)} {impostor.with_suffix('.pub').read_text()}")
    code, output = ansible_ping(fleet, host, {"tally_ssh_known_hosts": str(known_hosts)})
    assert code != 0
    assert '"unreachable": 1' in output, output
    assert "mismatching host key" in output or "Host key verification failed" in output, output


def test_sshd_takes_keys_only_and_never_root(fleet):
    lb = fleet.hosts("lb")[0]
    # Without a key, the server offers nothing else: no password, no keyboard-interactive.
    no_key = ssh(
        fleet,
        lb,
        "true",
        options=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    assert no_key.returncode == 255
    assert "Permission denied (publickey)" in no_key.stderr, no_key.stderr

    # root, with a key root itself accepts: still refused (PermitRootLogin no, AllowUsers).
    keys = "/root/.ssh/authorized_keys"
    fleet.exec(
        lb,
        "sh",
        "-c",
        f"install -d -m 700 /root/.ssh; [ ! -e {keys} ] || cp -p {keys} {keys}.saved;"
        f" cat >>{keys}; chmod 600 {keys}",
        stdin=(fleet.ssh_dir / "id_ed25519.pub").read_text(),
    )
    try:
        as_root = ssh(fleet, lb, "true", user="root")
    finally:
        fleet.exec(lb, "sh", "-c", f"rm {keys}; [ ! -e {keys}.saved ] || mv {keys}.saved {keys}")
    assert as_root.returncode == 255
    assert "Permission denied" in as_root.stderr, as_root.stderr

    effective = ssh(fleet, lb, "sudo", "-n", "sshd", "-T").stdout.splitlines()
    settings = dict(line.split(" ", 1) for line in effective if " " in line)
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["authenticationmethods"] == "publickey"
    assert settings["allowusers"] == fleet.user("deploy")
    assert settings["allowtcpforwarding"] == "no"
    assert settings["x11forwarding"] == "no"
    assert "sha1" not in settings["kexalgorithms"] + settings["macs"]


def test_only_this_machine_reaches_ssh(fleet):
    """The firewall admits SSH from the fleet network's gateway (this machine, where Ansible
    runs: every other test here reaches it) and from no host of the fleet. The probes run side
    by side: a refused one waits out its timeout."""
    port = int(fleet.setting("common_ssh_port"))
    sources = fleet.hosts("lb") + fleet.hosts("web")[:1] + fleet.hosts("db_primary")
    pairs = [
        (source, target) for source in sources for target in all_hosts(fleet) if source != target
    ]
    with ThreadPoolExecutor(len(pairs)) as pool:
        reached = [
            pair
            for pair, ok in zip(
                pairs, pool.map(lambda p: fleet.connects(*p, port), pairs), strict=True
            )
            if ok
        ]
    assert reached == []
