"""Throwaway PostgreSQL primary + streaming replicas and Redis servers for the test suite.

They are real servers from the system's packages, started in a temporary directory on free
loopback ports and stopped when the tests end. Nothing here is a stand-in.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

# PostgreSQL refuses to run as root; as root, run it as this system user instead.
_PG_USER = "postgres"


class ServerError(RuntimeError):
    """A test server could not be started; the message says what to install or check."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url, *, method="GET", headers=None, timeout=10):
    """Send one request to an http:// URL on a test server (never another scheme)."""
    if not url.startswith("http://"):
        raise ValueError(f"not a test server URL: {url}")
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (checked above)


def wait_for(predicate, *, timeout, interval=0.05, what):
    """Poll `predicate` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def postgres_bindir():
    """Return the newest PostgreSQL server bin directory (TALLY_PG_BINDIR overrides)."""
    override = os.environ.get("TALLY_PG_BINDIR")
    candidates = [Path(override)] if override else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(versions)]
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).parent)
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "pg_basebackup").exists():
            return candidate
    raise ServerError(
        "No PostgreSQL server found. On Debian or Ubuntu: apt-get install postgresql "
        "(or set TALLY_PG_BINDIR to the directory holding postgres and pg_ctl)."
    )


def _demote():
    """Return subprocess keyword arguments that run a command as the postgres user when root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(_PG_USER)
    except KeyError:
        raise ServerError(
            "Running as root, PostgreSQL needs an unprivileged 'postgres' user; the postgresql "
            "package creates it."
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode:
        raise ServerError(f"{' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}")
    return result


@dataclass
class PostgresNode:
    """One PostgreSQL server in a data directory of its own."""

    bindir: Path
    datadir: Path
    port: int
    logfile: Path
    # A replica's name, as the inventory's replica host names: its slot, pgbouncer entry and alias.
    name: str = "primary"
    # What pg_basebackup -R wrote, so a test that cuts streaming can restore it.
    primary_conninfo: str = ""

    def pg_ctl(self, *args, env=None):
        return _run(
            [self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", *args],
            env=env,
            **_demote(),
        )

    def start(self):
        self.pg_ctl("start", "-o", f"-p {self.port} -k {self.datadir} -h 127.0.0.1")

    def stop(self, mode="fast"):
        self.pg_ctl("stop", "-m", mode)

    def is_running(self):
        return (self.datadir / "postmaster.pid").exists()


@dataclass
class Replication:
    """A primary and any number of streaming hot standbys, each with its own slot and backup."""

    primary: PostgresNode
    replicas: list
    superuser: str
    superuser_password: str
    app_user: str
    app_password: str
    database: str
    tmp: Path
    extra: dict = field(default_factory=dict)

    @property
    def replica(self):
        """The first replica, or None without replicas."""
        return self.replicas[0] if self.replicas else None

    def url(self, node, *, user=None, password=None, database=None):
        user = user or self.app_user
        password = password or self.app_password
        return f"postgres://{user}:{password}@127.0.0.1:{node.port}/{database or self.database}"

    def connect(self, node, *, autocommit=True):
        """A superuser connection to one node, for the tests' own inspection."""
        return psycopg.connect(
            host="127.0.0.1",
            port=node.port,
            user=self.superuser,
            password=self.superuser_password,
            dbname=self.database,
            autocommit=autocommit,
        )

    def primary_lsn(self):
        with self.connect(self.primary) as conn:
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]

    def replica_caught_up(self, lsn_text, node=None):
        """Whether `node` (every replica by default) has replayed past `lsn_text`."""
        for replica in [node] if node else self.replicas:
            with self.connect(replica) as conn:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn_text]
                ).fetchone()
            if not row[0]:
                return False
        return True

    def wait_for_replay(self, timeout=10, node=None):
        """Wait until the replicas have replayed everything the primary has written so far."""
        if not self.replicas:
            return
        target = self.primary_lsn()
        wait_for(
            lambda: self.replica_caught_up(target, node), timeout=timeout, what="replica replay"
        )

    def pause_replay(self, *nodes):
        """Pause replay on `nodes`, every replica by default."""
        for node in nodes or self.replicas:
            with self.connect(node) as conn:
                conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self, *nodes):
        for node in nodes or self.replicas:
            with self.connect(node) as conn:
                conn.execute("SELECT pg_wal_replay_resume()")

    def cut_streaming(self, node):
        """Stop a replica's WAL receiver: without primary_conninfo it has nowhere to stream from."""
        self._set_conninfo(node, "")
        wait_for(lambda: self.receiver(node) is None, timeout=10, what="the WAL receiver to exit")

    def heal_streaming(self, node):
        """Give a replica its primary_conninfo back and wait until it streams again."""
        self._set_conninfo(node, node.primary_conninfo)
        wait_for(lambda: self.streaming(node), timeout=15, what=f"{node.name} to stream")

    def receiver(self, node):
        """The replica's WAL receiver status ('streaming', ...), or None if it has none."""
        with self.connect(node) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
        return row and row[0]

    def streaming(self, node):
        """Whether the replica streams and the primary sends to it through its slot."""
        if self.receiver(node) != "streaming":
            return False
        with self.connect(self.primary) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [node.name]
            ).fetchone()
        return bool(row and row[0])

    def restore_streaming(self):
        """Start stopped nodes, heal cut replicas, resume replay, wait until all stream."""
        for node in (self.primary, *self.replicas):
            if not node.is_running():
                node.start()
        for node in self.replicas:
            with self.connect(node) as conn:
                current = conn.execute("SHOW primary_conninfo").fetchone()[0]
            if current != node.primary_conninfo:
                self._set_conninfo(node, node.primary_conninfo)
        self.resume_replay()
        for node in self.replicas:
            wait_for(lambda n=node: self.streaming(n), timeout=15, what=f"{node.name} to stream")

    def _set_conninfo(self, node, conninfo):
        # PostgreSQL 13 and later apply a new primary_conninfo on reload: the WAL receiver
        # restarts with it, or stays away while it is empty.
        with self.connect(node) as conn:
            conn.execute(
                psycopg.sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
                    psycopg.sql.Literal(conninfo)
                )
            )
            conn.execute("SELECT pg_reload_conf()")

    def stop(self):
        for node in (*self.replicas, self.primary):
            if node.is_running():
                node.stop("immediate")
        shutil.rmtree(self.tmp, ignore_errors=True)


_PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
max_slot_wal_keep_size = '1GB'
hot_standby = on
hot_standby_feedback = on
# A replica whose primary came back, or whose primary_conninfo a test restored, streams again
# within this, not the default 5 s.
wal_retrieve_retry_interval = '200ms'
# Django works in UTC; a server default of UTC spares a SET TIME ZONE on every new connection.
timezone = 'UTC'
# A throwaway test cluster: durability is not needed, speed is.
fsync = off
full_page_writes = off
"""


def replica_names(count):
    """Replica host names as in an inventory whose primary is db1: db2, db3, ..."""
    return [f"db{number}" for number in range(2, 2 + count)]


def start_replication(replicas=1):
    """Start a primary and `replicas` streaming replicas; returns a Replication for Django."""
    bindir = postgres_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="tally-pg-"))
    demote = _demote()
    if demote:
        os.chown(tmp, demote["user"], demote["group"])
    superuser, superuser_password = "tally_admin", secrets.token_hex(16)
    replication = Replication(
        primary=PostgresNode(bindir, tmp / "primary", free_port(), tmp / "primary.log"),
        replicas=[
            PostgresNode(bindir, tmp / name, free_port(), tmp / f"{name}.log", name=name)
            for name in replica_names(replicas)
        ],
        superuser=superuser,
        superuser_password=superuser_password,
        app_user="tally",
        app_password=secrets.token_hex(16),
        database="tally",
        tmp=tmp,
    )
    try:
        _build(replication, bindir, demote)
    except BaseException:
        replication.stop()
        raise
    return replication


def _build(replication, bindir, demote):
    primary = replication.primary
    pwfile = replication.tmp / "pwfile"
    pwfile.write_text(replication.superuser_password + "\n")
    if demote:
        os.chown(pwfile, demote["user"], demote["group"])
    _run(
        [
            bindir / "initdb",
            "-D",
            primary.datadir,
            "-U",
            replication.superuser,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        **demote,
    )
    with (primary.datadir / "postgresql.conf").open("a") as conf:
        conf.write(_PRIMARY_CONF)
    with (primary.datadir / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")
    primary.start()
    # The app's role is an ordinary owner, as in production; only the harness is superuser.
    admin = psycopg.connect(
        host="127.0.0.1",
        port=primary.port,
        user=replication.superuser,
        password=replication.superuser_password,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        admin.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(replication.app_user),
                psycopg.sql.Literal(replication.app_password),
            )
        )
        admin.execute(
            psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(replication.database),
                psycopg.sql.Identifier(replication.app_user),
            )
        )
        # As Ansible grants it: the replica pool reads pg_stat_wal_receiver's columns, which
        # only pg_read_all_stats shows.
        admin.execute(
            psycopg.sql.SQL("GRANT pg_read_all_stats TO {}").format(
                psycopg.sql.Identifier(replication.app_user)
            )
        )
    for replica in replication.replicas:
        _clone(replication, replica, bindir, demote)
    for replica in replication.replicas:
        wait_for(
            lambda r=replica: replication.streaming(r),
            timeout=30,
            what=f"replica {replica.name} to stream from the primary",
        )


def _clone(replication, replica, bindir, demote):
    """Make a replica from a base backup of its own, streaming through a slot of its own."""
    env = {**os.environ, "PGPASSWORD": replication.superuser_password}
    _run(
        [
            bindir / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(replication.primary.port),
            "-U",
            replication.superuser,
            "-D",
            replica.datadir,
            "-X",
            "stream",
            # An immediate checkpoint: the default spread one can take minutes.
            "--checkpoint=fast",
            "-R",
            "-C",
            "-S",
            replica.name,
        ],
        env=env,
        **demote,
    )
    replica.start()
    with replication.connect(replica) as conn:
        replica.primary_conninfo = conn.execute("SHOW primary_conninfo").fetchone()[0]


@dataclass
class RedisServer:
    """One redis-server with a password on a loopback port, configured like a deployment's."""

    name: str
    workdir: Path
    policy: str
    appendonly: bool
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen | None = None

    def url(self, db=0):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError(
                "No redis-server found. On Debian or Ubuntu: apt-get install redis-server"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "redis.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {self.password}\n"
            f'dir {self.workdir}\nsave ""\nmaxmemory 64mb\nmaxmemory-policy {self.policy}\n'
            f"appendonly {'yes' if self.appendonly else 'no'}\nappendfsync everysec\n"
        )
        self.process = subprocess.Popen(
            [binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, timeout=10, what=f"redis {self.name}")

    def _answers(self):
        if self.process.poll() is not None:
            raise ServerError(f"redis-server {self.name} exited with {self.process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_redis(*, tmp, name, policy, appendonly):
    """Start a redis-server in `tmp`/`name`; returns the running RedisServer."""
    server = RedisServer(name=name, workdir=Path(tmp) / name, policy=policy, appendonly=appendonly)
    server.start()
    return server


_PGBOUNCER_INI = """\
[databases]
{databases}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {workdir}
pidfile = {workdir}/pgbouncer.pid
logfile = {workdir}/pgbouncer.log
auth_type = scram-sha-256
auth_file = {workdir}/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
# Fail fast when a server is down, so the app's fallback can act: the defaults queue a client
# for up to two minutes.
server_connect_timeout = 2
server_login_retry = 1
query_wait_timeout = 5
"""


@dataclass
class Pgbouncer:
    """pgbouncer in transaction pooling mode: an entry for the primary and one per replica.

    As on a web host (pgbouncer/README.md): `tally` is the primary, `tally_<name>` a replica.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def database_url(self, replication, *, replica=False):
        """The URL of the primary's entry, or of `replica`'s (True: the first replica's)."""
        if replica is True:
            replica = replication.replica
        name = f"{replication.database}_{replica.name}" if replica else replication.database
        user, password = replication.app_user, replication.app_password
        return f"postgres://{user}:{password}@127.0.0.1:{self.port}/{name}"

    def replica_urls(self, replication):
        """TALLY_REPLICA_URLS as Ansible renders it: NAME=URL for each replica, comma-separated."""
        return ",".join(
            f"{node.name}={self.database_url(replication, replica=node)}"
            for node in replication.replicas
        )

    def start(self, replication):
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise ServerError("No pgbouncer found. On Debian or Ubuntu: apt-get install pgbouncer")
        demote = _demote()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with replication.connect(replication.primary) as conn:
            # The same SCRAM secret as the server's: pgbouncer authenticates the client with it
            # and then logs in to PostgreSQL with the keys it derived (SCRAM pass-through).
            secret = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [replication.app_user]
            ).fetchone()[0]
        (self.workdir / "userlist.txt").write_text(f'"{replication.app_user}" "{secret}"\n')
        entries = [(replication.database, replication.primary)] + [
            (f"{replication.database}_{node.name}", node) for node in replication.replicas
        ]
        databases = "\n".join(
            f"{name} = host=127.0.0.1 port={node.port} dbname={replication.database}"
            for name, node in entries
        )
        (self.workdir / "pgbouncer.ini").write_text(
            _PGBOUNCER_INI.format(databases=databases, port=self.port, workdir=self.workdir)
        )
        if demote:
            for path in [self.workdir, *self.workdir.iterdir()]:
                os.chown(path, demote["user"], demote["group"])
        self.process = subprocess.Popen(
            [binary, str(self.workdir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **demote,
        )
        wait_for(self._answers, timeout=10, what="pgbouncer")

    def serves(self, replication):
        """Whether every entry reaches its server through this pgbouncer."""
        for replica in [None, *replication.replicas]:
            try:
                with psycopg.connect(self.database_url(replication, replica=replica)) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error:
                return False
        return True

    def _answers(self):
        if self.process.poll() is not None:
            log = (self.workdir / "pgbouncer.log").read_text(errors="replace")[-2000:]
            raise ServerError(f"pgbouncer exited with {self.process.returncode}:\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


_SWIFT_STORAGE_SERVER_CONF = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
devices = {devices}
mount_check = false
disable_fallocate = true
swift_dir = {etc}
workers = 0

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""

# The S3 API (s3api) in front of Swift, with tempauth holding the one account. s3api needs a
# memcached for its signature checks, as in any Swift deployment.
_SWIFT_PROXY_CONF = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
swift_dir = {etc}
workers = 0

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy_logging cache listing_formats s3api
    tempauth copy slo dlo versioned_writes proxy_logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api

[filter:tempauth]
use = egg:swift#tempauth
user_{account}_{user} = {key} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}

{plain_filters}
"""

_SWIFT_PLAIN_FILTERS = (
    "catch_errors",
    "gatekeeper",
    "healthcheck",
    "proxy_logging",
    "listing_formats",
    "copy",
    "slo",
    "dlo",
    "versioned_writes",
)


@dataclass
class SwiftS3:
    """OpenStack Swift with its S3 API, from Debian's packages: the S3-compatible server.

    One proxy, one account, container and object server each on one device, and the memcached
    the proxy needs. Credentials are an S3 access key `account:user` and its secret key.
    """

    workdir: Path
    account: str = "tally"
    user: str = "static"
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = field(default_factory=free_port)
    processes: list = field(default_factory=list)

    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_key(self):
        return f"{self.account}:{self.user}"

    def public_url(self, bucket, key):
        """The unsigned URL a load balancer fetches a public-read object from."""
        return f"{self.endpoint_url}/v1/AUTH_{self.account}/{bucket}/{key}"

    def start(self):
        if shutil.which("swift-proxy-server") is None or shutil.which("memcached") is None:
            raise ServerError(
                "No Swift or memcached found. On Debian or Ubuntu: apt-get install swift "
                "swift-proxy swift-account swift-container swift-object memcached"
            )
        etc, devices = self.workdir / "etc", self.workdir / "srv"
        (devices / "d1").mkdir(parents=True)
        etc.mkdir()
        (etc / "swift.conf").write_text(
            f"[swift-hash]\nswift_hash_path_suffix = {secrets.token_hex(8)}\n"
            f"swift_hash_path_prefix = {secrets.token_hex(8)}\n\n"
            "[storage-policy:0]\nname = standard\ndefault = yes\n"
        )
        memcached_port = free_port()
        self._spawn(
            "memcached",
            # The pid file is never written (no -d), but it puts the work directory on the
            # command line, where a cleanup after an interrupted run finds it.
            ["memcached", "-l", "127.0.0.1", "-p", str(memcached_port), "-m", "16", "-U", "0"]
            + ["-P", str(self.workdir / "memcached.pid")]
            + (["-u", "nobody"] if os.geteuid() == 0 else []),
        )
        for kind in ("account", "container", "object"):
            port = free_port()
            builder = etc / f"{kind}.builder"
            # 2**4 partitions, one replica, one device: the smallest ring there is.
            _run(["swift-ring-builder", builder, "create", "4", "1", "1"])
            _run(["swift-ring-builder", builder, "add", f"r1z1-127.0.0.1:{port}/d1", "1"])
            _run(["swift-ring-builder", builder, "rebalance"])
            conf = etc / f"{kind}-server.conf"
            conf.write_text(
                _SWIFT_STORAGE_SERVER_CONF.format(port=port, devices=devices, etc=etc, kind=kind)
            )
            self._spawn(kind, [f"swift-{kind}-server", str(conf), "-v"])
        proxy = etc / "proxy-server.conf"
        proxy.write_text(
            _SWIFT_PROXY_CONF.format(
                port=self.port,
                etc=etc,
                account=self.account,
                user=self.user,
                key=self.key,
                memcached_port=memcached_port,
                plain_filters="\n".join(
                    f"[filter:{name}]\nuse = egg:swift#{name}\n" for name in _SWIFT_PLAIN_FILTERS
                ),
            )
        )
        self._spawn("proxy", ["swift-proxy-server", str(proxy), "-v"])
        wait_for(self._healthy, timeout=20, what="the Swift proxy")

    def _spawn(self, name, args):
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes.append((name, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)))
        log.close()

    def _healthy(self):
        for name, process in self.processes:
            if process.poll() is not None:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ServerError(f"swift {name} exited with {process.returncode}:\n{log}")
        with contextlib.suppress(OSError), http(f"{self.endpoint_url}/healthcheck", timeout=1) as r:
            return r.status == 200
        return False

    def create_public_bucket(self, bucket):
        """Create a bucket whose objects anyone may read (a Swift container read ACL)."""
        login = {"X-Auth-User": self.access_key, "X-Auth-Key": self.key}
        with http(f"{self.endpoint_url}/auth/v1.0", headers=login) as reply:
            token, storage_url = reply.headers["X-Auth-Token"], reply.headers["X-Storage-Url"]
        public = {"X-Auth-Token": token, "X-Container-Read": ".r:*"}
        http(f"{storage_url}/{bucket}", method="PUT", headers=public).close()

    def stop(self):
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _name, process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
