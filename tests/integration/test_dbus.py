"""D-Bus interface org.realtimeplot.Server1 and rtpctl, on a private bus."""
import json
import os
import subprocess
import time
import unittest

from rtplib import Mosquitto, PrivateBus, Server, ServerTestCase, Subscriber, main, on_postgres, SERVER

RTPCTL = os.path.join(os.path.dirname(os.path.abspath(SERVER)), "rtpctl")
DEST = ["--session", "--dest", "org.realtimeplot.Server1", "--object-path", "/org/realtimeplot/Server1"]


class DBus(ServerTestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.addCleanup(self.bus.cleanup)
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = dict(self.bus.env(), MQTT_SERVER_URL=f"127.0.0.1:{self.broker.port}")
        super().setUp()
        self.env = dict(os.environ, **self.bus.env())
        self.wait_for_name()

    def wait_for_name(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "owning the D-Bus name" in self.s.stderr() and "connected to the MQTT broker" in self.s.stderr():
                return
            time.sleep(0.05)
        raise AssertionError("the server did not take its D-Bus name: " + self.s.stderr()[-2000:])

    def ctl(self, *args, input=None):
        return subprocess.run([RTPCTL, *args], env=self.env, capture_output=True, text=True, input=input, timeout=60)

    def gdbus(self, method, *args):
        return subprocess.run(["gdbus", "call", *DEST, "--method", "org.realtimeplot.Server1." + method, *args],
                              env=self.env, capture_output=True, text=True, timeout=60)

    def test_status(self):
        r = self.ctl("--json", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        status = json.loads(r.stdout)
        self.assertEqual(status["listen_address"], self.s.url)
        self.assertEqual(status["database_kind"], "postgresql" if on_postgres() else "sqlite")
        self.assertEqual(status["users"], 1)
        self.assertTrue(status["mqtt_connected"])
        self.assertGreaterEqual(status["requests_served"], 1)
        r = subprocess.run(["gdbus", "introspect", *DEST, "--only-properties"], env=self.env, capture_output=True, text=True)
        self.assertIn("readonly s Version = '0.1.0'", r.stdout)
        self.assertIn("readonly b MqttConnected = true", r.stdout)

    def test_users(self):
        r = self.ctl("--json", "user", "add", "ada", "Ada", "Lovelace", "--email", "ada@lab.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        created = json.loads(r.stdout)
        self.s.login("ada", created["temporary_password"])  # the same service as HTTP
        self.assertEqual(self.s.db("SELECT email, user_type FROM users WHERE login_name = 'ada'"), [("ada@lab.org", "User")])
        r = self.ctl("user", "add", "ada", "A", "B")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "rtpctl: A user (ada) is already present in the database.\n")
        r = self.ctl("user", "reset-password", "ada")
        new_password = r.stdout.split(": ")[1].strip()
        self.s.login("ada", new_password)
        self.assertEqual(self.s.request("POST", "/auth/get_access_token", basic=("ada", created["temporary_password"])).status, 403)
        users = json.loads(self.ctl("--json", "user", "list").stdout)
        self.assertEqual(sorted(u["login_name"] for u in users), ["ada", "admin"])
        self.assertEqual(self.ctl("user", "delete", "ada").returncode, 0)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE login_name = 'ada'"), [(0,)])
        r = self.ctl("user", "delete", "admin")
        self.assertEqual(r.stderr, "rtpctl: The user (admin) is the only registered admin and therefore cannot be deleted.\n")

    def test_error_names(self):
        r = self.gdbus("DeletePv", "No:Such")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("org.realtimeplot.Server1.Error.NotFound", r.stderr)
        self.gdbus("CreatePv", "A:B", "{}")
        r = self.gdbus("CreatePv", "A:B", "{}")
        self.assertIn("org.realtimeplot.Server1.Error.Exists", r.stderr)
        r = self.gdbus("CreatePv", "NoColon", "{}")
        self.assertIn("org.realtimeplot.Server1.Error.Invalid", r.stderr)

    def test_pvs_experiments_export_import(self):
        self.assertEqual(self.ctl("pv", "add", "Test:M1:Fan", "--name", "Fan; one", "--publish", "--min", "0", "--max", "10").returncode, 0)
        pv = self.s.request("GET", "/experiments/pvs/Test:M1:Fan", token=self.admin).json["process_variable"]
        self.assertEqual(pv, {"pv_string": "Test:M1:Fan", "human_readable_name": "Fan; one", "experiment_short_id": "Test",
                              "available_for_mqtt_publish": True, "default_threshold_min": 0, "default_threshold_max": 10})
        user, token = self.create_user("ulla")
        self.assertEqual(self.ctl("experiment", "assign", "Test", user["user_id"]).returncode, 0)
        self.assertEqual(self.s.request("GET", "/experiments/Test", token=token).status, 200)
        self.assertEqual(json.loads(self.ctl("--json", "pv", "list").stdout), [pv])
        self.assertEqual(json.loads(self.ctl("--json", "experiment", "list").stdout),
                         [{"short_id": "Test", "human_readable_name": "", "process_variables": ["Test:M1:Fan"],
                           "user_ids": [user["user_id"]]}])
        r = self.ctl("experiment", "assign", "Test", "ghost")
        self.assertEqual(r.returncode, 1)
        self.assertIn("The user (ghost) does not exist", r.stderr)
        exported = self.ctl("export").stdout
        over_http = self.s.request("GET", "/file/export", token=self.admin).raw
        strip = lambda text: [l for l in text.splitlines() if not l.startswith("# created")]
        self.assertEqual(strip(exported), strip(over_http))  # one implementation behind both
        self.assertIn("[PROCESS_VARIABLE];pv_string=Test:M1:Fan;human_readable_name=Fan&SMKL& one;", exported)
        self.assertEqual(self.ctl("pv", "delete", "Test:M1:Fan").returncode, 0)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM experiments"), [(0,)])
        r = self.ctl("--json", "import", "-", input=exported)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["process_variables_in_database"], 1)
        self.assertEqual(self.s.request("GET", "/experiments/pvs/Test:M1:Fan", token=self.admin).json["process_variable"], pv)

    def test_publish_is_audited_and_signalled(self):
        sub = Subscriber(self.broker.port)
        self.addCleanup(sub.close)
        self.ctl("pv", "add", "Test:M1:Fan", "--publish")
        monitor = subprocess.Popen(["gdbus", "monitor", "--session", "--dest", "org.realtimeplot.Server1"], env=self.env,
                                   stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            r = self.ctl("publish", "Test:M1:Fan", "42")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sub.get(), ("rtp/Test/M1/Fan", "42", 1))
            deadline = time.monotonic() + 10
            line = ""
            while "ValueSet" not in line and time.monotonic() < deadline:
                line = monitor.stdout.readline()
            self.assertIn("org.realtimeplot.Server1.ValueSet ('Test:M1:Fan', '42', 'dbus:uid=%d')" % os.getuid(), line)
        finally:
            monitor.terminate()
            monitor.wait()
            monitor.stdout.close()
        self.assertEqual(self.s.db("SELECT user_id, value, outcome FROM publish_log"), [(f"dbus:uid={os.getuid()}", "42", "published")])
        r = self.ctl("publish", "Test:M1:Nope", "1")
        self.assertEqual(r.stderr, "rtpctl: The process variable (Test:M1:Nope) is not present in the database.\n")

    def test_reload_config(self):
        with open(os.path.join(self.s.dir, ".env"), "w") as f:
            f.write("DEFAULT_ARCHIVER_TIME_PERIOD=9\nTHRESHOLD_UNIT=bar\n")
        r = self.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "restart needed for THRESHOLD_UNIT\n")
        with open(os.path.join(self.s.dir, ".env"), "w") as f:
            f.write("ACCESS_TOKEN_VALIDITY_TIME=never\n")
        r = self.ctl("reload")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ACCESS_TOKEN_VALIDITY_TIME", r.stderr)
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.admin).status, 200)

    def test_second_server_keeps_serving_http(self):
        other = Server(env=self.bus.env())
        self.addCleanup(other.cleanup)
        other.start()
        deadline = time.monotonic() + 10
        while "is taken by another process" not in other.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("is taken by another process", other.stderr())
        self.assertEqual(other.request("GET", "/auth/users/current", token=other.login()).status, 200)
        other.stop()

    def test_plain_text_output(self):
        r = self.ctl("--json", "user", "add", "ada", "Ada", "Lovelace", "--email", "ada@lab.org")
        ada = json.loads(r.stdout)["user_id"]
        self.assertEqual(self.ctl("pv", "add", "Lab:M1:Fan", "--name", "Fan one", "--publish").returncode, 0)
        self.assertEqual(self.ctl("pv", "add", "Lab:M1:Temp").returncode, 0)
        self.assertEqual(self.ctl("experiment", "assign", "Lab", ada).returncode, 0)

        r = self.ctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        status = dict(line.split(": ", 1) for line in r.stdout.splitlines())
        self.assertEqual(status["listen_address"], self.s.url)
        self.assertEqual(status["database_kind"], "postgresql" if on_postgres() else "sqlite")
        self.assertEqual(status["users"], "2")
        self.assertEqual(status["directory"], "unconfigured")
        r = self.ctl("user", "list")
        self.assertIn(f"{ada}\tada\tAda Lovelace\tUser\tada@lab.org\tlocal", r.stdout.splitlines())
        self.assertIn("0\tadmin\t", r.stdout)
        r = self.ctl("pv", "list")
        self.assertEqual(r.stdout.splitlines(), ["Lab:M1:Fan\tFan one\tpublishable", "Lab:M1:Temp\t\t-"])
        r = self.ctl("experiment", "list")
        self.assertEqual(r.stdout.splitlines(), ["Lab\t\t2 PVs\t1 users"])
        r = self.ctl("user", "reset-password", "ada")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.s.login("ada", r.stdout.strip().removeprefix("temporary_password: "))

    def test_usage_errors_change_nothing(self):
        before = self.s.db("SELECT COUNT(*) FROM process_variables")
        for args, message in [(["pv", "add", "Lab:M1:Fan", "--min", "low"], "--min and --max take whole numbers"),
                              (["pv", "add", "Lab:M1:Fan", "--colour", "red"], "unknown option for pv add"),
                              (["pv", "delete"], "pv delete needs PV"),
                              (["experiment", "assign", "Lab"], "experiment assign needs SHORT_ID USER_ID"),
                              (["import"], "import needs FILE"),
                              (["publish", "Lab:M1:Fan"], "publish needs PV VALUE"),
                              ([], "no command")]:
            with self.subTest(args=args):
                r = self.ctl(*args)
                self.assertEqual(r.returncode, 2)
                self.assertTrue(r.stderr.startswith(f"rtpctl: {message}\n"), r.stderr)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM process_variables"), before)
        # no server on the bus: a clear error, exit 1
        self.s.stop()
        r = self.ctl("status")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("rtpctl: "), r.stderr)
        self.s.start()
        self.admin = self.s.login()

    def test_rtpctl_links_no_server_libraries(self):
        libs = subprocess.run(["ldd", RTPCTL], capture_output=True, text=True, check=True).stdout
        for lib in ["libgda", "libcurl", "libpaho", "libsoup", "libargon2"]:
            self.assertNotIn(lib, libs)
        self.assertIn("libgio", libs)

    def test_usage(self):
        r = self.ctl("--help")
        for command in ["status", "user add", "user list", "reset-password", "user delete", "pv add", "pv list", "pv delete",
                        "export", "import", "publish", "--json"]:
            self.assertIn(command, r.stdout)
        self.assertEqual(self.ctl("frobnicate").returncode, 2)


@unittest.skipUnless(os.getuid() == 0, "needs root to run observers as another user")
class SystemBusPolicy(ServerTestCase):
    """The shipped policy on a private system bus: only root and the realtimeplot group receive
    the service's signals (before, any local user saw ValueSet with user ids)."""
    POLICY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "org.realtimeplot.Server1.conf")

    def setUp(self):
        import shutil
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="rtp-sysbus-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        conf = os.path.join(self.dir, "system.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={self.dir}/system_bus_socket</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><deny own="*"/><deny send_type="method_call"/>
<allow send_type="signal"/><allow send_requested_reply="true" send_type="method_return"/>
<allow send_requested_reply="true" send_type="error"/><allow receive_type="method_call"/>
<allow receive_type="method_return"/><allow receive_type="error"/><allow receive_type="signal"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/></policy>
<include>{os.path.abspath(self.POLICY)}</include></busconfig>""")
        self.bus = subprocess.Popen(["dbus-daemon", "--config-file", conf, "--nofork", "--print-address=1"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.address = self.bus.stdout.readline().strip()
        self.addCleanup(self.stop_bus)
        self.assertTrue(self.address, self.bus.stderr.read() if self.bus.poll() is not None else "")
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = {"DBUS_SYSTEM_BUS_ADDRESS": self.address, "MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}"}
        self.server_args = ["--bus", "system"]
        super().setUp()
        deadline = time.monotonic() + 30
        while not ("owning the D-Bus name" in self.s.stderr() and "connected to the MQTT broker" in self.s.stderr()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("owning the D-Bus name", self.s.stderr())

    def stop_bus(self):
        self.bus.terminate()
        self.bus.wait()
        self.bus.stdout.close()
        self.bus.stderr.close()

    def observer(self, as_nobody):
        cmd = ["gdbus", "monitor", "--address", self.address, "--dest", "org.realtimeplot.Server1"]
        if as_nobody:
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + cmd
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, HOME="/tmp"))
        self.addCleanup(p.wait)
        self.addCleanup(p.terminate)
        return p

    def test_signals_reach_root_only(self):
        import fcntl
        root, nobody = self.observer(False), self.observer(True)
        time.sleep(1)  # both have added their match rules
        self.s.request("POST", "/experiments/pvs", token=self.admin,
                       json_body={"pv_string": "Test:M1:Fan", "available_for_mqtt_publish": True})
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": ["0"]})
        self.assertEqual(self.s.request("PUT", "/publish/Test:M1:Fan", token=self.admin, json_body={"value": 42}).status, 200)
        seen = ""
        deadline = time.monotonic() + 10
        while "ValueSet" not in seen and time.monotonic() < deadline:
            seen += root.stdout.readline()
        self.assertIn("org.realtimeplot.Server1.ValueSet ('Test:M1:Fan', '42', '0')", seen)
        time.sleep(0.5)
        fcntl.fcntl(nobody.stdout, fcntl.F_SETFL, os.O_NONBLOCK)
        self.assertIsNone(nobody.poll())  # connected and listening all along
        other = nobody.stdout.read() or ""
        self.assertNotIn("ValueSet", other)
        nobody.terminate()
        root.terminate()
        root.stdout.close()
        nobody.stdout.close()


if __name__ == "__main__":
    main()
