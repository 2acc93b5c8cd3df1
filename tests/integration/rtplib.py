"""Helpers for integration tests: start the real server binary, talk HTTP over loopback.

Every server listens on 127.0.0.1 with a port it picks itself (--port 0) and is stopped
by the test (SIGTERM, then its exit status and stderr are checked for sanitizer reports).
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

SERVER = os.environ.get("RTP_SERVER", os.path.join(os.path.dirname(__file__), "../../build/src/realtimeplot-server"))
START_TIMEOUT = 60  # sanitizer builds start slowly


def vm_mb(pid, key):
    """A /proc/<pid>/status figure in MB: VmRSS (now) or VmHWM (the peak so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid):
    """Sets VmHWM back to the current VmRSS (Linux: 5 > /proc/<pid>/clear_refs), so that a peak measured
    afterwards is this test's and not the start's (the first admin's argon2id hash takes 19 MiB)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    return vm_mb(pid, "VmRSS")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserve_port(port=0):
    """A socket bound to 127.0.0.1:port (0: any free one) that does not listen: connections are
    refused, as with nothing there, but no other program can take the port (tests run in
    parallel) until it is closed. SO_REUSEADDR lets a server that sets it too (mosquitto,
    asyncio/aiosmtpd) bind the port while the reservation is still held."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


# ---- the OpenAPI contract: every JSON answer a test receives is checked against data/openapi.json ----

OPENAPI_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "data", "openapi.json")
_CONTRACT = None


class ContractError(AssertionError):
    pass


def openapi_document():
    with open(OPENAPI_PATH) as f:
        return json.load(f)


def _contract():
    global _CONTRACT
    if _CONTRACT is None:
        import jsonschema
        doc = openapi_document()
        routes = []
        for template, item in doc["paths"].items():
            parts = template.strip("/").split("/")
            regex = "^/" + "/".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
            literal = [not p.startswith("{") for p in parts]
            routes.append((re.compile(regex), literal, template, item))
        resolver = jsonschema.RefResolver.from_schema(doc)
        _CONTRACT = (doc, routes, resolver, jsonschema)
    return _CONTRACT


def operation_for(method, raw_path):
    """The document's path template and operation of a request (the most literal template wins, as the
    server's router decides), or (None, None)."""
    _, routes, _, _ = _contract()
    path = raw_path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]  # the router takes a trailing slash as the original did
    best = None
    for regex, literal, template, item in routes:
        if regex.match(path) and method.lower() in item:
            if best is None or literal > best[0]:
                best = (literal, template, item[method.lower()])
    return (best[1], best[2]) if best else (None, None)


def check_contract(method, raw_path, response):
    """Validates a JSON answer against the response schema the document gives for its route and status
    (the error envelope for errors, and for paths no route has). Off with RTP_OPENAPI_CHECK=0."""
    if os.environ.get("RTP_OPENAPI_CHECK") == "0" or response.json is None:
        return
    ctype = (response.header("Content-Type") or "").split(";")[0].strip()
    if ctype != "application/json":
        return
    doc, _, resolver, jsonschema = _contract()
    template, operation = operation_for(method, raw_path)
    if operation is None:
        if response.status < 400:
            raise ContractError(f"{method} {raw_path} answered {response.status} but is not in data/openapi.json")
        schema = {"$ref": "#/components/schemas/Error"}
    else:
        answer = operation["responses"].get(str(response.status)) or operation["responses"].get("default")
        if str(response.status) not in operation["responses"] and response.status < 400:
            raise ContractError(f"{method} {template}: status {response.status} is not in data/openapi.json")
        schema = answer.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            raise ContractError(f"{method} {template} {response.status}: a JSON answer the document does not give")
    try:
        jsonschema.Draft202012Validator(schema, resolver=resolver).validate(response.json)
    except jsonschema.ValidationError as e:
        raise ContractError(f"{method} {raw_path} {response.status}: the answer does not match data/openapi.json: "
                            f"{e.message} at {list(e.absolute_path)}\n{response.raw[:500]}") from None


class Server:
    """One server process with its own state directory, HOME and XDG dirs."""

    def __init__(self, workdir=None, env=None, args=None, config=None, preexec=None, verbose=True):
        self.own_dir = workdir is None
        self.preexec = preexec  # runs in the child before exec (dropping privileges, limits)
        self.verbose = verbose  # --verbose logs every request (tests want it; benchmarks do not)
        self.dir = workdir or tempfile.mkdtemp(prefix="rtp-it-")
        self.state = os.path.join(self.dir, "state")
        self.extra_env = env or {}
        self.args = args or []
        self.config = config
        self.proc = None
        self.url = None
        self.port = None
        self.admin_password = None
        self.stdout_lines = []
        self.stderr_path = os.path.join(self.dir, "server.stderr")

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("G_DEBUG")}
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        env.update({
            "HOME": home,
            "XDG_DATA_HOME": os.path.join(home, "data"),
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "XDG_STATE_HOME": os.path.join(home, "state"),
            "XDG_CACHE_HOME": os.path.join(home, "cache"),
            "DEFAULT_ADMIN_PASSWORD": "",
        })
        env.update(self.extra_env)
        return env

    def start(self, expect_ok=True):
        cmd = [SERVER, "--port", "0", "--state-dir", self.state] + (["--verbose"] if self.verbose else []) + self.args
        if on_postgres() and not any(a.startswith("--database") for a in self.args) \
                and "SQLALCHEMY_DATABASE_URI" not in self.extra_env:
            marker = os.path.join(self.dir, "pg_database")
            if getattr(self, "pg_database", None) is None and os.path.exists(marker):
                with open(marker) as f:
                    self.pg_database = f.read().strip()  # a restart on the same directory: the same database
            if getattr(self, "pg_database", None) is None:
                self.pg_database = shared_postgres().new_database()
                with open(marker, "w") as f:
                    f.write(self.pg_database)
            cmd += ["--database", shared_postgres().uri(self.pg_database)]
        if self.config:
            cmd += ["--config", self.config]
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=self.environment(), stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, text=True, preexec_fn=self.preexec)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout_lines.append(line)
            m = re.search(r"one-time password: (\S+)", line)
            if m:
                self.admin_password = m.group(1)
            m = re.match(r"Listening on (http://127\.0\.0\.1:(\d+)/)", line)
            if m:
                self.url = m.group(1)
                self.port = int(m.group(2))
                # keep draining stdout so the server never blocks on a full pipe
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        if expect_ok:
            self.proc.wait(timeout=30)
            raise AssertionError(f"server did not start (exit {self.proc.returncode}): {self.stderr()}")
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self.stdout_lines.append(line)

    def send_signal(self, sig=signal.SIGTERM):
        """Sends @sig once; a later stop() waits for the exit instead of signalling again."""
        self.signalled = True
        self.proc.send_signal(sig)

    def stderr(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, expect_status=0):
        if self.proc is None:
            return None
        if self.proc.poll() is None and not getattr(self, "signalled", False):
            self.proc.send_signal(sig)
        self.signalled = False
        status = self.proc.wait(timeout=60)
        self.stderr_file.close()
        self.proc.stdout.close()
        self.proc = None
        err = self.stderr()
        if "AddressSanitizer" in err or "runtime error:" in err or "LeakSanitizer" in err:
            raise AssertionError("sanitizer report from the server:\n" + err[-6000:])
        if expect_status is not None and status != expect_status:
            raise AssertionError(f"server exited with {status}, expected {expect_status}:\n{err[-4000:]}")
        return status

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- HTTP ----

    def request(self, method, path, token=None, json_body=None, body=None, headers=None, basic=None,
                source="127.0.0.1", timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(source, 0))
        h = dict(headers or {})
        if token is not None:
            h["x-access-tokens"] = token
        if basic is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                (basic if isinstance(basic, str) else f"{basic[0]}:{basic[1]}").encode()).decode()
        if json_body is not None:
            body = json.dumps(json_body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        # non-ASCII characters are percent-encoded as a browser does; existing escapes stay
        path = urllib.parse.quote(path, safe="/:%?=&;@!$'()*+,")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            response = Response(r.status, r.getheaders(), r.read().decode("utf-8", "replace"))
        finally:
            conn.close()
        check_contract(method, path, response)
        return response

    def login(self, login="admin", password=None, source="127.0.0.1"):
        r = self.request("POST", "/auth/get_access_token", basic=(login, password or self.admin_password),
                         source=source)
        assert r.status == 200, r
        return r.json["access_token"]

    def db_path(self):
        return os.path.join(self.state, "realtimeplot.db")

    def database_uri(self):
        """What --database takes for this server's database: for another server on the same one."""
        if getattr(self, "pg_database", None) is not None:
            return shared_postgres().uri(self.pg_database)
        return "sqlite:///" + self.db_path()

    def db(self, sql, params=()):
        if getattr(self, "pg_database", None) is not None:
            rows = shared_postgres().sql(self.pg_database, sql.replace("?", "%s"), params if params else None)
            return [tuple(r) for r in rows]
        con = sqlite3.connect(self.db_path(), timeout=10)
        try:
            rows = con.execute(sql, params).fetchall()
            con.commit()  # a write counts, as with PostgreSQL's autocommit
            return rows
        finally:
            con.close()


class ServerTestCase(unittest.TestCase):
    """A test case with one running server (self.s) and an admin token (self.admin)."""

    server_env = None
    server_args = None

    def setUp(self):
        self.s = Server(env=self.server_env, args=self.server_args)
        self.addCleanup(self.s.cleanup)
        self.s.start()
        self.admin = self.s.login()

    def tearDown(self):
        self.s.stop()

    def assertError(self, r, status, message):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json, {"errors": [message]}, r)

    def mqtt_received(self, outcome):
        """rtp_mqtt_received_total{outcome=...} of the server, from GET /metrics."""
        from prometheus_client.parser import text_string_to_metric_families
        text = self.s.request("GET", "/metrics", token=self.admin).raw
        return sum(s.value for f in text_string_to_metric_families(text) if f.name == "rtp_mqtt_received"
                   for s in f.samples if s.labels.get("outcome") == outcome)

    def create_user(self, login, user_type="User", **extra):
        body = {"login_name": login, "first_name": login.title(), "last_name": "Tester", "user_type": user_type}
        body.update(extra)
        r = self.s.request("POST", "/auth/users", token=self.admin, json_body=body)
        self.assertEqual(r.status, 200, r)
        user = r.json["user"]
        token = self.s.login(login, user["temporary_password"])
        return user, token


def main():
    if os.environ.get("RTP_TEST_POSTGRES") == "1" and not Postgres.available():
        print("SKIP: the PostgreSQL server binaries (Debian package postgresql) are not installed")
        sys.exit(77)
    result = unittest.main(verbosity=2, exit=False).result
    run = result.testsRun
    failed = len(result.failures) + len(result.errors)
    print(f"{run - failed - len(result.skipped)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() and run > 0 else 1)


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1 and a free port, with persistence in its own directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rtp-mqtt-")
        self.port = None
        self.proc = None
        self.reserved = None  # holds the port while the broker is stopped

    def start(self):
        for _ in range(20):
            port = self.port or free_port()
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                        f"persistence_location {self.dir}/\nautosave_interval 1\n")
            log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
            self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        self.port = port
                        if self.reserved is not None:
                            self.reserved.close()
                            self.reserved = None
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            if self.port is not None:
                time.sleep(0.5)  # the old port is still in TIME_WAIT: try it again
        raise AssertionError("mosquitto did not start")

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
            if self.port is not None and self.reserved is None:
                try:
                    self.reserved = reserve_port(self.port)  # a restart gets the same port
                except OSError:
                    pass

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self):
        if self.proc is not None:
            self.resume()
        self.stop()
        if self.reserved is not None:
            self.reserved.close()
            self.reserved = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Subscriber:
    """A paho client subscribed to '#' with QoS 1 and a persistent session, collecting messages."""

    def __init__(self, port, client_id=None):
        import paho.mqtt.client as mqtt
        import queue
        self.messages = queue.Queue()
        self.client = mqtt.Client(client_id=client_id or f"rtp-test-{os.getpid()}-{time.monotonic_ns()}",
                                  clean_session=False)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.qos))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, q: self.subscribed.set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber did not subscribe"

    def get(self, timeout=15):
        import queue
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no MQTT message arrived")

    def expect_nothing(self, seconds=0.5):
        import queue
        try:
            m = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected MQTT message {m}")

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class ArchiverFixture:
    """tests/archiver_fixture.py on 127.0.0.1 and a port of its own choosing."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "archiver_fixture.py")

    def __init__(self):
        self.proc = None
        self.url = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, self.SCRIPT], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"Listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, f"fixture did not start: {line!r}"
        self.url = m.group(1)
        return self

    def control(self, path, body):
        import urllib.request
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def pv(self, name, **spec):
        spec["name"] = name
        self.control("/control/pv", spec)

    def mode(self, mode, **extra):
        extra["mode"] = mode
        self.control("/control/mode", extra)

    def release(self):
        self.control("/control/release", {})

    def missing(self, *paths):
        """Those appliance endpoints answer 404, as on an older appliance."""
        self.control("/control/missing", {"paths": list(paths)})

    def requests(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/control/requests", timeout=30) as r:
            return json.loads(r.read())["requests"]

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc.stdout.close()
            self.proc = None


class PrivateBus:
    """A dbus-daemon of our own (no service activation), for D-Bus tests."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rtp-bus-")
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={self.dir}</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>""")
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file", conf, "--nofork", "--print-address=1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.address = self.proc.stdout.readline().strip()
        assert self.address, "dbus-daemon did not start"

    def env(self):
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def cleanup(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """A real PostgreSQL cluster in a temporary directory on 127.0.0.1 and a free port.

    As root it runs as the 'postgres' system user (PostgreSQL refuses to run as root)."""

    BIN = "/usr/lib/postgresql/15/bin"

    @classmethod
    def available(cls):
        return os.path.exists(os.path.join(cls.BIN, "initdb"))

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rtp-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.counter = 0
        self.as_root = os.getuid() == 0

    def _run(self, *args, check=True):
        cmd = list(args)
        if self.as_root:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self):
        if self.as_root:
            subprocess.run(["chown", "postgres:postgres", self.dir], check=True)
        if not os.path.exists(self.data):
            self._run(os.path.join(self.BIN, "initdb"), "-D", self.data, "-U", "rtp", "--auth=trust", "-E", "UTF8",
                      "--no-sync")
            # one role that needs its password (tests of passwords from the keyring); everyone else is trusted
            hba = os.path.join(self.data, "pg_hba.conf")
            with open(hba) as f:
                rules = f.read()
            with open(hba, "w") as f:
                f.write("host all rtp_pw 127.0.0.1/32 scram-sha-256\nlocal all rtp_pw scram-sha-256\n" + rules)
        for _ in range(10):
            self.port = self.port or free_port()
            r = self._run(os.path.join(self.BIN, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                          "-o", f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
                          check=False)
            if r.returncode == 0:
                return self
            self.port = None
        raise AssertionError("PostgreSQL did not start: " + r.stdout + r.stderr)

    def stop(self, mode="fast"):
        self._run(os.path.join(self.BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def new_database(self):
        self.counter += 1
        name = f"rtp_{os.getpid()}_{self.counter}"
        self.sql("postgres", f"CREATE DATABASE {name}")
        return name

    def uri(self, name):
        return f"postgresql://rtp@127.0.0.1:{self.port}/{name}"

    def sql(self, database, statement, params=()):
        import psycopg2
        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="rtp", dbname=database)
        con.autocommit = True
        try:
            cur = con.cursor()
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


_POSTGRES = None


def shared_postgres():
    """One cluster for the whole test program when RTP_TEST_POSTGRES=1."""
    global _POSTGRES
    if _POSTGRES is None:
        import atexit
        _POSTGRES = Postgres().start()
        atexit.register(_POSTGRES.cleanup)
    return _POSTGRES


def on_postgres():
    return os.environ.get("RTP_TEST_POSTGRES") == "1"


def sqlite_only(test):
    return unittest.skipIf(on_postgres(), "SQLite-specific")(test)


class SmtpReceiver:
    """A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) storing mail in a Maildir."""

    def __init__(self, port=None, per_session=None, first_delay=None):
        """@per_session: at most this many messages in one SMTP session, the next answered with 421.
        @first_delay: seconds the receiver takes over the first message before it answers."""
        self.dir = tempfile.mkdtemp(prefix="rtp-smtp-")
        self.port = port
        self.per_session = per_session
        self.first_delay = first_delay
        self.proc = None

    def start(self):
        for _ in range(10):
            port = self.port or free_port()
            handler = ["aiosmtpd.handlers.Mailbox", os.path.join(self.dir, "mail")]
            if self.per_session is not None or self.first_delay is not None:
                handler = ["smtp_limited.LimitedMailbox", os.path.join(self.dir, "mail"),
                           str(self.per_session or 1000000), str(self.first_delay or 0)]
            env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
            self.proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c",
                                          *handler], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        self.port = port
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise AssertionError("the SMTP receiver did not start")

    def messages(self):
        import mailbox
        path = os.path.join(self.dir, "mail")
        if not os.path.exists(path):
            return []
        return sorted(mailbox.Maildir(path, create=False), key=lambda m: m["Date"] or "")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Slapd:
    """A real OpenLDAP slapd (Debian's slapd) on 127.0.0.1 and a free port: an mdb database under
    dc=lab,dc=test filled with slapadd, and TLS (STARTTLS and ldaps) with a certificate made for the run.

    People: alice (in the admin group and experiment group A), bob (group A), carol (no group),
    dave (group B); the search account cn=reader with password 'readerpw'. Each person's password is
    '<name>pw'."""

    SUFFIX = "dc=lab,dc=test"
    ROOT_DN = "cn=root,dc=lab,dc=test"
    ROOT_PW = "rootpw"
    READER_DN = "cn=reader,dc=lab,dc=test"
    READER_PW = "readerpw"
    ADMINS = "cn=rtp-admins,ou=groups,dc=lab,dc=test"
    GROUP_A = "cn=exp-a,ou=groups,dc=lab,dc=test"
    GROUP_B = "cn=exp-b,ou=groups,dc=lab,dc=test"

    @staticmethod
    def available():
        return shutil.which("slapd") is not None or os.path.exists("/usr/sbin/slapd")

    def __init__(self, tls=True):
        self.dir = tempfile.mkdtemp(prefix="rtp-ldap-")
        self.tls = tls
        self.port = None
        self.tls_port = None
        self.proc = None
        self.reserved = []  # hold the ports while slapd is stopped: its restart gets the same ones
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self._configure()

    def _run(self, *cmd, stdin=None):
        r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"{cmd[0]} failed: {r.stderr}")
        return r.stdout

    def _certificates(self):
        d = self.dir
        self._run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rtp test CA",
                  "-keyout", f"{d}/ca.key", "-out", self.ca_file)
        with open(f"{d}/san.ext", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self._run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                  "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
        self._run("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", self.ca_file, "-CAkey", f"{d}/ca.key",
                  "-CAcreateserial", "-days", "2", "-extfile", f"{d}/san.ext", "-out", f"{d}/server.pem")

    def _configure(self):
        d = self.dir
        os.makedirs(f"{d}/db")
        tls = ""
        if self.tls:
            self._certificates()
            tls = (f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {d}/server.pem\n"
                   f"TLSCertificateKeyFile {d}/server.key\n")
        schema = "/etc/ldap/schema"
        self.conf = f"{d}/slapd.conf"
        with open(self.conf, "w") as f:
            f.write(f"include {schema}/core.schema\ninclude {schema}/cosine.schema\n"
                    f"include {schema}/inetorgperson.schema\ninclude {schema}/nis.schema\n"
                    f"modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n{tls}"
                    f"database mdb\nsuffix \"{self.SUFFIX}\"\nrootdn \"{self.ROOT_DN}\"\nrootpw {self.ROOT_PW}\n"
                    f"directory {d}/db\nmaxsize 10485760\n"
                    "access to attrs=userPassword by self write by anonymous auth by * none\n"
                    "access to * by users read by * none\n")
        people = [("alice", "Alice", "Adams", "alice@lab.test"), ("bob", "Bob", "Brown", "bob@lab.test"),
                  ("carol", "Carol", "Clark", None), ("dave", "Dave", "Dörr", "dave@lab.test")]
        ldif = [f"dn: {self.SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: lab\no: Lab\n",
                f"dn: ou=people,{self.SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
                f"dn: ou=groups,{self.SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
                f"dn: {self.READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                f"cn: reader\nuserPassword: {self.READER_PW}\n"]
        for uid, given, sn, mail in people:
            entry = (f"dn: uid={uid},ou=people,{self.SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                     f"cn: {given} {sn}\ngivenName: {given}\nuserPassword: {uid}pw\n")
            entry += f"sn:: {base64.b64encode(sn.encode()).decode()}\n"
            if mail:
                entry += f"mail: {mail}\n"
            ldif.append(entry)
        groups = [(self.ADMINS, ["alice"]), (self.GROUP_A, ["alice", "bob"]), (self.GROUP_B, ["dave"])]
        for dn, members in groups:
            entry = f"dn: {dn}\nobjectClass: groupOfNames\ncn: {dn.split(',')[0][3:]}\n"
            entry += "".join(f"member: uid={m},ou=people,{self.SUFFIX}\n" for m in members)
            ldif.append(entry)
        self._run("slapadd", "-f", self.conf, "-q", stdin="\n".join(ldif))

    def url(self, secure=False):
        return f"ldaps://127.0.0.1:{self.tls_port}" if secure else f"ldap://127.0.0.1:{self.port}"

    def start(self):
        restart = self.port is not None  # the server under test knows these ports: keep them
        for _ in range(20):
            self.port = self.port or free_port()
            urls = f"ldap://127.0.0.1:{self.port}/"
            if self.tls:
                self.tls_port = self.tls_port or free_port()
                urls += f" ldaps://127.0.0.1:{self.tls_port}/"
            log = open(os.path.join(self.dir, "slapd.log"), "ab")
            self.proc = subprocess.Popen(["slapd", "-f", self.conf, "-h", urls, "-d", "0"], stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        for r in self.reserved:
                            r.close()
                        self.reserved = []
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            if restart:
                time.sleep(0.5)  # the same ports again (slapd binds with SO_REUSEADDR, as the reservation)
            else:
                for r in self.reserved:
                    r.close()
                self.reserved = []
                self.port = self.tls_port = None
        raise AssertionError("slapd did not start")

    def modify(self, ldif):
        """Changes the directory as its administrator would (ldapmodify over the network)."""
        self._run("ldapmodify", "-x", "-H", self.url(), "-D", self.ROOT_DN, "-w", self.ROOT_PW, stdin=ldif)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
            # tests run in parallel: while slapd is stopped no other test's server may take its ports
            for port in (self.port, self.tls_port):
                if port is not None and not self.reserved_port(port):
                    try:
                        self.reserved.append(reserve_port(port))
                    except OSError:
                        pass

    def reserved_port(self, port):
        return any(r.getsockname()[1] == port for r in self.reserved)

    def cleanup(self):
        self.stop()
        for r in self.reserved:
            r.close()
        self.reserved = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def server_env(self, secure=False, **extra):
        """The server's RTP_LDAP_* settings for this directory."""
        env = {"RTP_LDAP_URL": self.url(secure), "RTP_LDAP_CA_FILE": self.ca_file if self.tls else "",
               "RTP_LDAP_BIND_DN": self.READER_DN, "RTP_LDAP_BIND_PASSWORD": self.READER_PW,
               "RTP_LDAP_BASE_DN": self.SUFFIX, "RTP_LDAP_ADMIN_GROUP": self.ADMINS,
               "RTP_LDAP_EXPERIMENT_GROUPS": f"{self.GROUP_A}=EXPA; {self.GROUP_B}=EXPB", "RTP_LDAP_TIMEOUT": "2"}
        env.update(extra)
        return env
