"""make cloud-up and make cloud-down against a local AWS API: moto in server mode, on 127.0.0.1.

The example environment (deploy/example) is copied to a temporary folder with an SSH key of its
own, and the fork's own prerequisites are made in moto first: the DNS zone it owns and a Debian
image. Then cloud-up creates everything, runs again and in check mode without a change, its
security groups are compared with every host's firewall (both made from tally_firewall_rules),
and cloud-down removes what it made, refusing first while the backup bucket holds a backup.

What this proves: the playbook's calls to the AWS API, their idempotence, the resources'
settings as the API reports them, and the files written for the provision. What it cannot:
moto keeps records and boots nothing, so no instance runs Debian, takes the SSH host key from
its user data, or routes a packet; no security group or bucket policy is enforced; IAM, quotas,
prices and AWS's eventual consistency are not there. The SSH path a cloud's VMs are reached by
is the one every fleet test runs (test_ssh.py).
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

from loadtests.fleet import ROOT
from provisioning import make

EXAMPLE = ROOT / "deploy" / "example"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A moto server on 127.0.0.1 behind TLS (a certificate made here, which boto3 is told to
    trust: the backup bucket's policy refuses plain HTTP, and moto enforces it), the
    environment variables that send boto3 to it, and the example environment's settings."""
    folder = tmp_path_factory.mktemp("moto")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("motoserver.py")),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            str(cert),
            "-k",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, "the moto server exited"
            assert time.monotonic() < deadline, "the moto server did not listen within 30 s"
            time.sleep(0.2)
    cloud = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "cloud.yml").read_text())
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"https://127.0.0.1:{port}",
        "AWS_CA_BUNDLE": str(cert),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env.pop("AWS_PROFILE", None)
    yield {"env": env, "region": cloud["cloud_region"], "cloud": cloud}
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def client(aws):
    def make_client(service):
        return boto3.client(
            service,
            endpoint_url=aws["env"]["AWS_ENDPOINT_URL"],
            verify=aws["env"]["AWS_CA_BUNDLE"],
            region_name=aws["region"],
            aws_access_key_id=aws["env"]["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws["env"]["AWS_SECRET_ACCESS_KEY"],
        )

    return make_client


@pytest.fixture(scope="module")
def example(tmp_path_factory, aws, client):
    """A copy of deploy/example with its own SSH key, the fork's DNS zone and Debian image made
    in moto, and a function that runs `make cloud-up`/`cloud-down` on it."""
    folder = tmp_path_factory.mktemp("cloud") / "example"
    shutil.copytree(EXAMPLE, folder)
    (folder / ".ssh").mkdir(mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / ".ssh" / "id_ed25519")],
        check=True,
    )
    client("route53").create_hosted_zone(
        Name=aws["cloud"]["cloud_dns_zone"], CallerReference="fork"
    )
    image = client("ec2").register_image(
        Name="debian-13-amd64", RootDeviceName="/dev/xvda", Architecture="x86_64"
    )["ImageId"]

    def run(target, *args):
        return make(
            target,
            f"DEPLOY={folder}",
            f"CLOUD_ARGS=-e cloud_image={image} {' '.join(args)}",
            env=aws["env"],
        )

    return {"folder": folder, "image": image, "run": run}


def inventory_hosts(folder):
    groups = {}

    def walk(name, body):
        body = body or {}
        groups[name] = list(body.get("hosts") or {})
        for child, sub in (body.get("children") or {}).items():
            walk(child, sub)
            groups[name] += groups[child]

    walk("all", yaml.safe_load((folder / "inventory.yml").read_text())["all"])
    return groups


def tagged(resources, env="example"):
    return [r for r in resources if {"Key": "tally:env", "Value": env} in r.get("Tags", [])]


def changed(run):
    return run.recap()["localhost"]["changed"]


@pytest.fixture(scope="module")
def created(example):
    run = example["run"]("cloud-up")
    assert run.returncode == 0, run.report()
    return run


def test_cloud_up_creates_the_network_in_two_zones(created, client, aws):
    ec2 = client("ec2")
    [vpc] = tagged(ec2.describe_vpcs()["Vpcs"])
    assert vpc["CidrBlock"] == aws["cloud"]["cloud_vpc_cidr"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"
    ]
    zones = aws["cloud"]["cloud_zones"]
    assert sorted(s["CidrBlock"] for s in subnets) == sorted(
        aws["cloud"]["cloud_public_subnets"] + aws["cloud"]["cloud_private_subnets"]
    )
    assert {s["AvailabilityZone"] for s in subnets} == set(zones)
    [igw] = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}]
    )["InternetGateways"]
    [nat] = [
        n
        for n in ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "NatGateways"
        ]
        if n["State"] == "available"
    ]
    public = {
        s["SubnetId"] for s in subnets if s["CidrBlock"] in aws["cloud"]["cloud_public_subnets"]
    }
    assert nat["SubnetId"] in public
    # Each subnet's default route: the public ones' to the internet gateway, the private ones'
    # to the NAT gateway.
    tables = tagged(
        ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "RouteTables"
        ]
    )
    exits = {}
    for table in tables:
        [route] = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        for association in table["Associations"]:
            exits[association["SubnetId"]] = route.get("GatewayId") or route.get("NatGatewayId")
    assert exits == {
        s["SubnetId"]: igw["InternetGatewayId"] if s["SubnetId"] in public else nat["NatGatewayId"]
        for s in subnets
    }


def test_cloud_up_starts_one_instance_per_host_sized_from_the_capacity_inputs(
    created, client, example, aws
):
    folder = example["folder"]
    groups = inventory_hosts(folder)
    sizes = yaml.safe_load((folder / "capacity.yml").read_text())["hosts"]
    defaults = yaml.safe_load((ROOT / "ansible/roles/cloud/defaults/main.yml").read_text())
    catalogue = defaults["cloud_instance_types"]
    ec2 = client("ec2")
    instances = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    by_host = {
        next(t["Value"] for t in i["Tags"] if t["Key"] == "tally:host"): i for i in instances
    }
    assert sorted(by_host) == sorted(set(groups["all"]))
    public = {
        s["SubnetId"]
        for s in ec2.describe_subnets()["Subnets"]
        if s["CidrBlock"] in aws["cloud"]["cloud_public_subnets"]
    }
    for host, instance in by_host.items():
        tier = next(t for g, t in defaults["cloud_tiers"].items() if host in groups.get(g, []))
        cores, ram = sizes[f"{tier}_cores"], sizes[f"{tier}_ram_mb"]
        fits = [t["type"] for t in catalogue if t["cores"] >= cores and t["ram_mb"] >= ram]
        # The cheapest type that fits: the first one in the catalogue.
        assert instance["InstanceType"] == fits[0], (host, tier, cores, ram)
        assert instance["ImageId"] == example["image"]
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert (instance["SubnetId"] in public) == (host in groups["lb"]), host
    # Hosts of a tier alternate between the zones.
    for tier in ("web", "db"):
        zones = {by_host[h]["Placement"]["AvailabilityZone"] for h in groups[tier]}
        assert len(zones) == 2, (tier, zones)


def test_cloud_up_writes_the_addresses_and_host_keys_the_provision_reads(created, client, example):
    folder = example["folder"]
    ec2 = client("ec2")
    [address] = tagged(ec2.describe_addresses()["Addresses"])
    instances = {
        i["InstanceId"]: i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    }
    known_hosts = (folder / ".ssh" / "known_hosts").read_text().splitlines()
    for host in set(inventory_hosts(folder)["all"]):
        written = yaml.safe_load((folder / "host_vars" / host / "cloud.generated.yml").read_text())
        [instance_id] = re.findall(
            r"instance (i-\w+)", (folder / "host_vars" / host / "cloud.generated.yml").read_text()
        )
        instance = instances[instance_id]
        assert written["tally_address"] == instance["PrivateIpAddress"]
        expected_host = address["PublicIp"] if host == "lb1" else instance["PrivateIpAddress"]
        assert written["ansible_host"] == expected_host
        key = (folder / ".ssh" / "hosts" / f"{host}.pub").read_text().split()[:2]
        assert f"{expected_host} {' '.join(key)}" in [
            " ".join(line.split()[:3]) for line in known_hosts
        ]
        # The same key goes to the host at its first boot.
        data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data = yaml.safe_load(base64.b64decode(data["UserData"]["Value"]))
        assert user_data["ssh_keys"]["ed25519_public"].split()[:2] == key
        assert user_data["ssh_keys"]["ed25519_private"].startswith(
            "-----BEGIN OPENSSH PRIVATE KEY-----"
        )
    assert address["InstanceId"] == next(
        i for i, v in instances.items() if {"Key": "tally:host", "Value": "lb1"} in v["Tags"]
    )


def test_cloud_up_makes_a_public_static_bucket_and_a_private_backup_bucket(
    created, client, example
):
    settings = yaml.safe_load((example["folder"] / "group_vars" / "all" / "main.yml").read_text())
    s3 = client("s3")
    static, backup = settings["tally_static_bucket"], settings["tally_backup_bucket"]
    [read] = json.loads(s3.get_bucket_policy(Bucket=static)["Policy"])["Statement"]
    assert (read["Effect"], read["Principal"], read["Action"]) == ("Allow", "*", "s3:GetObject")
    assert read["Resource"] == f"arn:aws:s3:::{static}/static/*"
    block = s3.get_public_access_block(Bucket=backup)["PublicAccessBlockConfiguration"]
    assert len(block) == 4
    assert all(block.values()), block
    [deny] = json.loads(s3.get_bucket_policy(Bucket=backup)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for bucket in (static, backup):
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_cloud_up_points_the_site_at_the_bastion(created, client, aws, example):
    settings = yaml.safe_load((example["folder"] / "group_vars" / "all" / "main.yml").read_text())
    r53 = client("route53")
    [zone] = r53.list_hosted_zones()["HostedZones"]
    records = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    [record] = [r for r in records if r["Type"] == "A"]
    assert record["Name"] == settings["tally_site_hosts"][0] + "."
    [address] = tagged(client("ec2").describe_addresses()["Addresses"])
    assert record["ResourceRecords"] == [{"Value": address["PublicIp"]}]


def test_a_second_cloud_up_changes_nothing(created, example):
    run = example["run"]("cloud-up")
    assert run.returncode == 0, run.report()
    assert changed(run) == 0, run.changed_tasks()


def test_cloud_up_in_check_mode_changes_nothing(created, example):
    run = example["run"]("cloud-up", "--check")
    assert run.returncode == 0, run.report()
    assert changed(run) == 0, run.changed_tasks()


def test_the_security_groups_open_exactly_what_the_firewalls_open(
    created, client, example, aws, tmp_path
):
    folder = example["folder"]
    preview = tmp_path / "firewall"
    run = make(
        "firewall-preview",
        f"DEPLOY={folder}",
        f"PREVIEW_ARGS=-e common_firewall_preview_dir={preview}",
        env=aws["env"],
    )
    assert run.returncode == 0, run.report()
    hosts = set(inventory_hosts(folder)["all"])
    address_of = {
        h: yaml.safe_load((folder / "host_vars" / h / "cloud.generated.yml").read_text())[
            "tally_address"
        ]
        for h in hosts
    }
    host_at = {f"{a}/32": h for h, a in address_of.items()} | {a: h for h, a in address_of.items()}

    nft = set()
    for host in hosts:
        text = (preview / f"{host}.nft").read_text()
        for proto, port, sources in re.findall(
            r"^\s*(tcp|udp) dport (\d+) (?:ip saddr \{ ([^}]*) \} )?accept", text, re.MULTILINE
        ):
            for source in [s.strip() for s in sources.split(",")] if sources else ["0.0.0.0/0"]:
                nft.add((host_at.get(source, source), host, proto, int(port)))

    ec2 = client("ec2")
    groups = {g["GroupId"]: g for g in tagged(ec2.describe_security_groups()["SecurityGroups"])}
    members = {gid: set() for gid in groups}
    instances = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    host_of = {}
    for instance in instances:
        host = next(t["Value"] for t in instance["Tags"] if t["Key"] == "tally:host")
        host_of[instance["InstanceId"]] = host
        for group in instance["SecurityGroups"]:
            members[group["GroupId"]].add(host)
    sgs = set()
    for gid, group in groups.items():
        for permission in group["IpPermissions"]:
            assert permission["FromPort"] == permission["ToPort"], permission
            sources = [r["CidrIp"] for r in permission.get("IpRanges", [])] + [
                source
                for pair in permission.get("UserIdGroupPairs", [])
                for source in members[pair["GroupId"]]
            ]
            for destination in members[gid]:
                for source in sources:
                    # A group admits its own members; a host's firewall leaves itself out.
                    if source != destination:
                        sgs.add(
                            (
                                host_at.get(source, source),
                                destination,
                                permission["IpProtocol"],
                                permission["FromPort"],
                            )
                        )
    assert nft, "no opening found in the rendered firewalls"
    assert sgs == nft, {
        "only in the security groups": sgs - nft,
        "only in the firewalls": nft - sgs,
    }


def test_cloud_down_keeps_a_backup_bucket_with_backups_then_removes_everything(
    created, client, example
):
    settings = yaml.safe_load((example["folder"] / "group_vars" / "all" / "main.yml").read_text())
    s3, ec2 = client("s3"), client("ec2")
    # moto applies a bucket policy's Deny without its condition ("Conditions are not taken into
    # account", its docs say), so the backup bucket's refusal of plain HTTP would refuse these
    # HTTPS calls too, which AWS admits: the policy goes first (the test above read it).
    s3.delete_bucket_policy(Bucket=settings["tally_backup_bucket"])
    s3.put_object(Bucket=settings["tally_backup_bucket"], Key="backup/tally/backup.info", Body=b"x")
    refused = example["run"]("cloud-down")
    assert refused.returncode != 0
    assert "holds 1 objects" in refused.output, refused.report()
    assert tagged(ec2.describe_vpcs()["Vpcs"]), "a refused cloud-down removed the VPC"

    s3.delete_object(Bucket=settings["tally_backup_bucket"], Key="backup/tally/backup.info")
    run = example["run"]("cloud-down")
    assert run.returncode == 0, run.report()
    assert not tagged(ec2.describe_vpcs()["Vpcs"])
    assert not tagged(ec2.describe_security_groups()["SecurityGroups"])
    assert not tagged(ec2.describe_addresses()["Addresses"])
    assert not [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert not [n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"]
    assert not [a for a in ec2.describe_addresses()["Addresses"]]
    assert not ec2.describe_key_pairs()["KeyPairs"]
    assert not s3.list_buckets()["Buckets"]
    r53 = client("route53")
    [zone] = r53.list_hosted_zones()["HostedZones"]
    assert {
        r["Type"]
        for r in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    } == {
        "NS",
        "SOA",
    }
    assert not list(example["folder"].glob("host_vars/*/cloud.generated.yml"))

    again = example["run"]("cloud-down")
    assert again.returncode == 0, again.report()
    assert changed(again) == 0, again.changed_tasks()
