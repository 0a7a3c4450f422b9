"""The local stack: Kafka (KRaft), ClickHouse and Mosquitto as real servers, no Docker.

``ioe stack up`` is idempotent: a server that already answers on its port is reused (and then
never stopped by ``ioe stack down``, which only stops what it started, tracked by pid files under
``.local/<server>/``). Each server is described by one :class:`Server` entry in :data:`SERVERS`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ioe.settings import ROOT, Settings, get_settings

#: Debian packages each server needs, and the binary that proves the package is there.
SYSTEM_PACKAGES: dict[str, tuple[str, str]] = {
    "java": ("openjdk-17-jre-headless", "java"),
    "maven": ("maven", "mvn"),
    "clickhouse": ("clickhouse-server", "clickhouse-server"),
    "clickhouse-client": ("clickhouse-client", "clickhouse-client"),
    "mosquitto": ("mosquitto", "mosquitto"),
}


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    describe: str
    start: Callable[[Settings, Path], subprocess.Popen[bytes]]
    healthy: Callable[[Settings], bool]
    startup_timeout_s: float = 90.0


# -- helpers -------------------------------------------------------------------------------------
def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _spawn(cmd: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=str(cwd) if cwd else None, start_new_session=True,
    )


def ensure_system_packages(names: list[str] | None = None, *, as_root: bool | None = None) -> None:
    """Install missing Debian packages when root; otherwise say exactly what to run."""
    missing = [pkg for key, (pkg, binary) in SYSTEM_PACKAGES.items()
               if (names is None or key in names) and shutil.which(binary) is None
               and not Path("/usr/sbin", binary).exists()]
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if not (os.geteuid() == 0 if as_root is None else as_root):
        raise StackError("missing system packages; run:\n  sudo apt-get update && sudo "
                         + " ".join(command))
    print(f"installing {' '.join(missing)} with apt-get …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


# -- Kafka ---------------------------------------------------------------------------------------
KAFKA_POM = ROOT / "infra" / "kafka" / "pom.xml"


def kafka_libs(local: Path) -> Path:
    """Resolve the broker's jars with Maven once; a hash of the pom decides when to refresh."""
    libs = local / "kafka" / "libs"
    stamp = local / "kafka" / "libs.sha256"
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    if libs.is_dir() and stamp.exists() and stamp.read_text() == digest:
        return libs
    ensure_system_packages(["java", "maven"])
    print("resolving Kafka jars from Maven Central (first run only) …", flush=True)
    if libs.exists():
        shutil.rmtree(libs)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}"],
        check=True,
    )
    stamp.write_text(digest)
    return libs


def _kafka_properties(settings: Settings, data: Path) -> str:
    host, _, port = settings.kafka_bootstrap.partition(":")
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{int(port) + 1}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{int(port) + 1}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        f"num.partitions={settings.partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "message.max.bytes=16777216",
        "replica.fetch.max.bytes=16777216",
        "log.retention.hours=168",
        "log.segment.bytes=67108864",
        "",
    ])


def _log4j2(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "log4j2.properties"
    path.write_text(
        "status = warn\n"
        "appender.console.type = Console\nappender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\nrootLogger.appenderRefs = stdout\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        "logger.kafka.name = kafka.server.KafkaServer\nlogger.kafka.level = INFO\n"
    )
    return path


def _kafka_java(libs: Path, log4j: Path, heap: str = "768m") -> list[str]:
    return ["java", "-Xms128m", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]


def _format_kafka_storage(java: list[str], props: Path, data: Path) -> None:
    """Format the KRaft log directory once (a formatted directory keeps its cluster id)."""
    if (data / "meta.properties").exists():
        return
    cluster_id = "-"
    while cluster_id.startswith("-"):  # a leading '-' would be read as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                    "-c", str(props)], check=True, stdout=subprocess.DEVNULL)


def start_kafka(settings: Settings, local: Path) -> subprocess.Popen[bytes]:
    libs = kafka_libs(local)
    base = local / "kafka"
    data = base / "data"
    props = base / "server.properties"
    props.write_text(_kafka_properties(settings, data))
    java = _kafka_java(libs, _log4j2(base))
    _format_kafka_storage(java, props, data)
    return _spawn([*java, "kafka.Kafka", str(props)], base / "kafka.log")


def _kafka_secure_properties(settings: Settings, data: Path, secure: SecureOptions,
                             keystore: Path) -> str:
    """The broker's properties with an external SASL_SSL (SCRAM-SHA-512) listener and ACLs.

    Why ANONYMOUS is a super user: the loopback PLAINTEXT and CONTROLLER listeners carry no
    identity (their principal is ANONYMOUS), and the services and tests on this machine must
    keep working as before; only principals authenticated on SASL_SSL (the edges) are bound by
    the ACLs ``ioe edge enrol`` creates (StandardAuthorizer, stored in the KRaft metadata).
    """
    host, _, port = settings.kafka_bootstrap.partition(":")
    lines = _kafka_properties(settings, data).splitlines()
    replace = {
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{int(port) + 1},"
                     f"SASL_SSL://{secure.bind}:{secure.kafka_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},"
                                f"SASL_SSL://{secure.advertised_host}:{secure.kafka_port}",
        "listener.security.protocol.map":
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
    }
    # auto.create.topics.enable stays as the loopback services expect it: an edge has no
    # CREATE permission, so it cannot create topics by producing to them anyway
    out = [f"{k}={replace[k]}" if (k := line.partition("=")[0]) in replace else line
           for line in lines if line]
    out += [
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        # a revoked edge's open connection must authenticate again within this time
        "connections.max.reauth.ms=300000",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=false",
        "",
    ]
    return "\n".join(out)


def kafka_keystore(options: SecureOptions) -> Path:
    """The broker's key and certificate as one PEM keystore (0600) for Kafka's TLS."""
    from ioe.edge.authority import EdgeAuthority

    return EdgeAuthority(options.state_dir).broker_files(options.server_names).kafka_keystore


def start_kafka_secure(settings: Settings, local: Path,
                       options: SecureOptions) -> subprocess.Popen[bytes]:
    libs = kafka_libs(local)
    base = local / "kafka"
    data = base / "data"
    props = base / "server.properties"
    props.write_text(_kafka_secure_properties(settings, data, options, kafka_keystore(options)))
    java = _kafka_java(libs, _log4j2(base))
    _format_kafka_storage(java, props, data)
    return _spawn([*java, "kafka.Kafka", str(props)], base / "kafka.log")


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A free port P whose neighbour P+1 is free too (a broker's controller listens on P+1)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
        if port >= 65000:
            continue
        try:
            with socket.socket() as second:
                second.bind((host, port + 1))
            return port
        except OSError:
            continue
    raise StackError("no free pair of ports")


class PrivateKafka:
    """A second broker from the same jars, on free ports and its own directory.

    For tests and benchmarks that must stop or restart Kafka: the shared broker of the stack is
    never touched. ``stop``/``start``/``restart`` keep the data directory, like a real outage.
    """

    def __init__(self, base: Settings, workdir: Path, *, partitions: int | None = None,
                 secure: SecureOptions | None = None) -> None:
        """``secure``: also the SASL_SSL listener and the authorizer of ``up --secure`` (its
        ``kafka_port`` should be a free port)."""
        port = free_port_pair()
        changes: dict[str, object] = {"kafka_bootstrap": f"127.0.0.1:{port}"}
        if partitions is not None:
            changes["partitions"] = partitions
        self.settings = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
        self.workdir = workdir
        self.log = workdir / "kafka.log"
        self.props = workdir / "server.properties"
        workdir.mkdir(parents=True, exist_ok=True)
        self.props.write_text(
            _kafka_properties(self.settings, workdir / "data") if secure is None else
            _kafka_secure_properties(self.settings, workdir / "data", secure,
                                     kafka_keystore(secure)))
        self.java = _kafka_java(kafka_libs(base.local_dir), _log4j2(workdir), heap="512m")
        _format_kafka_storage(self.java, self.props, workdir / "data")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        self.proc = _spawn([*self.java, "kafka.Kafka", str(self.props)], self.log)
        deadline = time.monotonic() + timeout_s
        while not kafka_healthy(self.settings):
            if self.proc.poll() is not None:
                raise StackError(f"private Kafka exited; see {self.log}")
            if time.monotonic() > deadline:
                raise StackError(f"private Kafka not healthy after {timeout_s}s; see {self.log}")
            time.sleep(0.5)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop (SIGTERM to its process group), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


def kafka_healthy(settings: Settings) -> bool:
    host, _, port = settings.kafka_bootstrap.split(",")[0].partition(":")
    if not port_open(host, int(port)):
        return False
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                 request_timeout_ms=5000)
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True
    except Exception:
        return False


# -- ClickHouse ----------------------------------------------------------------------------------
def _clickhouse_config(settings: Settings, base: Path) -> Path:
    data = base / "data"
    for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    users = base / "users.xml"
    users.write_text(
        "<?xml version=\"1.0\"?>\n<yandex>\n"
        "  <profiles><default><max_memory_usage>4000000000</max_memory_usage>"
        "<load_balancing>random</load_balancing></default></profiles>\n"
        "  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip>"
        "</networks><profile>default</profile><quota>default</quota></default></users>\n"
        "  <quotas><default><interval><duration>3600</duration><queries>0</queries>"
        "<errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows>"
        "<execution_time>0</execution_time></interval></default></quotas>\n</yandex>\n"
    )
    install_clickhouse_users_d(base)
    config = base / "config.xml"
    config.write_text(f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{base}/log/clickhouse-server.log</log>
    <errorlog>{base}/log/clickhouse-server.err.log</errorlog>
    <size>50M</size>
    <count>2</count>
  </logger>
  <http_port>{settings.clickhouse_http_port}</http_port>
  <tcp_port>{settings.clickhouse_port}</tcp_port>
  <listen_host>{settings.clickhouse_host}</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>{data}/</path>
  <tmp_path>{base}/tmp/</tmp_path>
  <user_files_path>{base}/user_files/</user_files_path>
  <format_schema_path>{base}/format_schemas/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
""")
    return config


def install_clickhouse_users_d(base: Path) -> None:
    """Copy infra/clickhouse/users.d/*.xml (the read-only analyst user, docs/data-engineering.md)
    next to users.xml; ClickHouse merges users.d/ and reloads it without a restart."""
    target = base / "users.d"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "infra" / "clickhouse" / "users.d").glob("*.xml")):
        shutil.copyfile(path, target / path.name)


def start_clickhouse(settings: Settings, local: Path) -> subprocess.Popen[bytes]:
    ensure_system_packages(["clickhouse", "clickhouse-client"])
    base = local / "clickhouse"
    config = _clickhouse_config(settings, base)
    binary = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
    return _spawn([binary, f"--config-file={config}"], base / "stdout.log", cwd=base)


def clickhouse_healthy(settings: Settings) -> bool:
    url = f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/ping"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.read().strip() == b"Ok.") and port_open(
                settings.clickhouse_host, settings.clickhouse_port)
    except OSError:
        return False


# -- Mosquitto -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecureMosquitto:
    """The external listener of ``ioe stack up --secure``: TLS, a client certificate from the
    project's CA (its CN becomes the username), the ACL and CRL that ``ioe edge`` renders.

    Why beside the loopback listener and not instead of it: the services and the tests on this
    machine keep their plaintext 127.0.0.1 listener unchanged (``per_listener_settings`` keeps
    the ACL to the secure listener only); only the outside world must prove who it is.
    """

    port: int
    bind: str
    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path
    acl_file: Path


def _mosquitto_user() -> str:
    return "root" if os.geteuid() == 0 else os.environ.get("USER", "root")


def mosquitto_config(settings: Settings, base: Path, secure: SecureMosquitto | None = None) -> str:
    """The broker's config; without ``secure`` exactly the plaintext loopback broker."""
    common = [
        f"user {_mosquitto_user()}",
        "persistence true",
        f"persistence_location {base}/",
        "autosave_interval 5",
        # persistent sessions keep what arrives while a subscriber is away: allow a lot
        "max_queued_messages 1000000",
        "max_inflight_messages 100",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
    ]
    if secure is None:
        lines = [f"listener {settings.mqtt_port} {settings.mqtt_host}", "allow_anonymous true",
                 *common]
    else:
        lines = [
            # security settings per listener: the ACL binds the secure listener only
            "per_listener_settings true", *common,
            # Mosquitto logs who connects and each refusal (certificate, ACL) at notice level
            "log_type notice",
            f"listener {settings.mqtt_port} {settings.mqtt_host}", "allow_anonymous true",
            f"listener {secure.port} {secure.bind}",
            f"cafile {secure.cafile}",
            f"certfile {secure.certfile}",
            f"keyfile {secure.keyfile}",
            f"crlfile {secure.crlfile}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            f"acl_file {secure.acl_file}",
        ]
    return "\n".join([*lines, ""])


def mosquitto_command(settings: Settings, base: Path,
                      secure: SecureMosquitto | None = None) -> list[str]:
    """Write the config under ``base`` and return the command that starts the broker."""
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "mosquitto.conf"
    conf.write_text(mosquitto_config(settings, base, secure))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return [binary, "-c", str(conf)]


def start_mosquitto(settings: Settings, local: Path) -> subprocess.Popen[bytes]:
    ensure_system_packages(["mosquitto"])
    base = local / "mosquitto"
    return _spawn(mosquitto_command(settings, base), base / "mosquitto.log")


def secure_mosquitto(settings: Settings, options: SecureOptions) -> SecureMosquitto:
    """Prepare the secure listener's files from the edge state (CA, broker certificate, ACL,
    a fresh CRL) and describe it."""
    from ioe.edge.authority import EdgeAuthority

    files = EdgeAuthority(options.state_dir).broker_files(options.server_names)
    return SecureMosquitto(port=options.mqtt_port, bind=options.bind, cafile=files.ca,
                           certfile=files.cert, keyfile=files.key, crlfile=files.crl,
                           acl_file=files.acl)


@dataclass(frozen=True)
class SecureOptions:
    """``ioe stack up --secure``: where the external listeners bind and the names edges dial."""

    state_dir: Path
    mqtt_port: int = 8883
    kafka_port: int = 9094
    bind: str = "0.0.0.0"  # noqa: S104 - the external listeners are the point of --secure
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    #: the host Kafka advertises on its SASL_SSL listener (one of ``server_names``)
    advertised_host: str = "127.0.0.1"


def default_secure_options(settings: Settings) -> SecureOptions:
    from ioe.edge.authority import default_state_dir, server_names_from_env

    return SecureOptions(state_dir=default_state_dir(settings),
                         bind=os.environ.get("IOE_SECURE_BIND", "0.0.0.0"),  # noqa: S104
                         server_names=server_names_from_env(),
                         advertised_host=os.environ.get("IOE_SECURE_HOST", "127.0.0.1"))


def start_mosquitto_secure(settings: Settings, local: Path,
                           options: SecureOptions) -> subprocess.Popen[bytes]:
    ensure_system_packages(["mosquitto"])
    base = local / "mosquitto"
    proc = _spawn(mosquitto_command(settings, base, secure_mosquitto(settings, options)),
                  base / "mosquitto.log")
    # `ioe edge revoke|enrol|renew` SIGHUP this pid to reload the ACL and CRL
    (options.state_dir / "mosquitto.pid").write_text(str(proc.pid))
    return proc


def mosquitto_healthy(settings: Settings) -> bool:
    if not port_open(settings.mqtt_host, settings.mqtt_port):
        return False
    try:
        with socket.create_connection((settings.mqtt_host, settings.mqtt_port), timeout=2) as s:
            # MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id "ioe-health"
            client_id = b"ioe-health"
            var = b"\x00\x04MQTT\x04\x02\x00\x0a"
            body = var + len(client_id).to_bytes(2, "big") + client_id
            s.sendall(bytes([0x10, len(body)]) + body)
            answer = s.recv(4)
            s.sendall(b"\xe0\x00")  # DISCONNECT
            return answer[:1] == b"\x20" and answer[3:4] == b"\x00"
    except OSError:
        return False


SERVERS: tuple[Server, ...] = (
    Server("kafka", 9092, "Apache Kafka (KRaft)", start_kafka, kafka_healthy, 120.0),
    Server("clickhouse", 9000, "ClickHouse", start_clickhouse, clickhouse_healthy, 60.0),
    Server("mosquitto", 1883, "Mosquitto MQTT", start_mosquitto, mosquitto_healthy, 30.0),
)


def _where(server: Server, settings: Settings) -> str:
    return {
        "kafka": settings.kafka_bootstrap,
        "clickhouse": f"{settings.clickhouse_host}:{settings.clickhouse_port} (native), "
                      f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}",
        "mosquitto": f"{settings.mqtt_host}:{settings.mqtt_port}",
    }[server.name]


def _pid_file(local: Path, server: Server) -> Path:
    return local / server.name / "pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return state != "Z"
    except OSError:
        return True


# -- commands ------------------------------------------------------------------------------------
def _secure_port(server: Server, secure: SecureOptions) -> int | None:
    return {"mosquitto": secure.mqtt_port, "kafka": secure.kafka_port}.get(server.name)


def _starter(server: Server,
             secure: SecureOptions | None) -> Callable[[Settings, Path], subprocess.Popen[bytes]]:
    if secure is None:
        return server.start
    if server.name == "mosquitto":
        return lambda settings, local: start_mosquitto_secure(settings, local, secure)
    if server.name == "kafka":
        return lambda settings, local: start_kafka_secure(settings, local, secure)
    return server.start


def up(settings: Settings | None = None, only: list[str] | None = None,
       out: Callable[[str], None] = print, secure: SecureOptions | None = None) -> None:
    """Start what is not running; with ``secure`` Mosquitto and Kafka also get their external
    TLS listeners (a server already running without them is reported, never restarted)."""
    settings = settings or get_settings()
    local = settings.local_dir
    local.mkdir(parents=True, exist_ok=True)
    started: list[tuple[Server, subprocess.Popen[bytes]]] = []
    for server in SERVERS:
        if only and server.name not in only:
            continue
        if server.healthy(settings):
            out(f"{server.name:<11} already running  {_where(server, settings)}")
            port = _secure_port(server, secure) if secure else None
            if secure is not None and port is not None:
                if port_open("127.0.0.1", port):
                    if server.name == "mosquitto":  # fresh ACL and CRL, reloaded on SIGHUP
                        secure_mosquitto(settings, secure)
                else:
                    out(f"{server.name:<11} WARNING: running without its secure listener "
                        f"(:{port}); restart it: ioe stack down --only {server.name} && "
                        "ioe stack up --secure")
            continue
        pid_file = _pid_file(local, server)
        if pid_file.exists():
            old = int(pid_file.read_text() or 0)
            if old and _pid_alive(old):  # ours but not answering yet: wait for it below
                started.append((server, None))  # type: ignore[arg-type]
                continue
        proc = _starter(server, secure)(settings, local)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(proc.pid))
        started.append((server, proc))
    for server, proc in started:
        deadline = time.monotonic() + server.startup_timeout_s
        while not server.healthy(settings):
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{server.name} exited with {proc.returncode}; see "
                                 f"{local / server.name}")
            if time.monotonic() > deadline:
                raise StackError(f"{server.name} not healthy after {server.startup_timeout_s}s;"
                                 f" see {local / server.name}")
            time.sleep(0.5)
        out(f"{server.name:<11} started          {_where(server, settings)}")
        port = _secure_port(server, secure) if secure else None
        if secure is not None and port is not None:
            out(f"{server.name:<11} secure listener  {secure.bind}:{port}")


def stop_process_group(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM a server's process group, SIGKILL it if it lingers (pid 0: nothing to do)."""
    if pid and _pid_alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def down(settings: Settings | None = None, out: Callable[[str], None] = print,
         only: list[str] | None = None) -> None:
    """Stop the servers ``up`` started (``only``: just those named), never the others."""
    settings = settings or get_settings()
    for server in reversed(SERVERS):
        if only and server.name not in only:
            continue
        pid_file = _pid_file(settings.local_dir, server)
        if not pid_file.exists():
            out(f"{server.name:<11} not started by ioe (left alone)")
            continue
        stop_process_group(int(pid_file.read_text() or 0))
        pid_file.unlink(missing_ok=True)
        out(f"{server.name:<11} stopped")


def status(settings: Settings | None = None, out: Callable[[str], None] = print) -> bool:
    settings = settings or get_settings()
    all_ok = True
    for server in SERVERS:
        ok = server.healthy(settings)
        all_ok &= ok
        owner = "ioe" if _pid_file(settings.local_dir, server).exists() else "external"
        state = "healthy" if ok else "DOWN"
        out(f"{server.name:<11} {state:<8} {_where(server, settings)}"
            + (f"  (started by {owner})" if ok else ""))
    return all_ok


if __name__ == "__main__":  # pragma: no cover - manual use
    up()
    sys.exit(0 if status() else 1)
