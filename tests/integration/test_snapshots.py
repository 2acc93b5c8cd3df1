"""Snapshots that save, compare and restore an experiment's set-points (issue "Set-points with guard
rails… snapshots"), with a real mosquitto broker and the archiver fixture."""
import csv
import io
import json
import os
import subprocess
import time

from rtplib import SERVER, ArchiverFixture, Mosquitto, PrivateBus, Server, ServerTestCase, Subscriber, main, on_postgres
from test_data import ts

NOT_ASSIGNED = "Only users that are assigned to the experiment and admins can access it."


class SnapshotTestCase(ServerTestCase):
    extra_env = {}

    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = {"ARCHIVER_URL": self.fx.url, "ARCHIVER_TIMEZONE": "Europe/Berlin",
                           "MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}", "MQTT_CHANNEL_PREFIX": "lab",
                           "RTP_ARCHIVER_TIMEOUT": "2", **self.extra_env}
        super().setUp()
        self.sub = Subscriber(self.broker.port)
        self.addCleanup(self.sub.close)
        self.now = int(time.time())
        self.past = ts(2022, 1, 15, 12, 0)
        self.fx.pv("Test:M1:Fan", samples=[[self.past - 60, 0, 100.0], [self.now - 30, 0, 150.0]])
        self.fx.pv("Test:M1:Pump", samples=[[self.now - 30, 0, "on"]])
        self.fx.pv("Test:M1:Temp", samples=[[self.past - 60, 0, 20.0], [self.now - 30, 0, 21.5]])
        for body in [{"pv_string": "Test:M1:Fan", "available_for_mqtt_publish": True, "setpoint_max": 2000},
                     {"pv_string": "Test:M1:Pump", "available_for_mqtt_publish": True},
                     {"pv_string": "Test:M1:Temp"},
                     {"pv_string": "Test:M1:Gone", "available_for_mqtt_publish": True}]:
            r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body=body)
            assert r.status == 200, r
        self.user, self.token = self.create_user("ulla")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})

    def take(self, body, token=None):
        return self.s.request("POST", "/snapshots/Test", token=token or self.token, json_body=body)


class Snapshots(SnapshotTestCase):
    def test_take_now_and_at_a_past_moment(self):
        r = self.take({"name": "before the shift", "comment": "beam settings"})
        self.assertEqual(r.status, 200, r)
        snap = r.json["snapshot"]
        self.assertEqual((snap["name"], snap["comment"], snap["experiment_short_id"], snap["taken_by"], snap["at"]),
                         ("before the shift", "beam settings", "Test", self.user["user_id"], None))
        self.assertEqual({pv: (v["value"] if v else None) for pv, v in snap["values"].items()},
                         {"Test:M1:Fan": 150.0, "Test:M1:Gone": None, "Test:M1:Pump": "on", "Test:M1:Temp": 21.5})
        r = self.take({"name": "last January", "at": "2022-01-15 13:00:00"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["snapshot"]["at"], "2022-01-15 13:00:00+01:00")
        self.assertEqual({pv: (v["value"] if v else None) for pv, v in r.json["snapshot"]["values"].items()},
                         {"Test:M1:Fan": 100.0, "Test:M1:Gone": None, "Test:M1:Pump": None, "Test:M1:Temp": 20.0})
        self.assertTrue(any("getDataAtTime" in q for q in self.fx.requests()))
        # refusals
        self.assertError(self.take({"name": "before the shift"}), 409,
                         "A snapshot (before the shift) is already present in the database.")
        self.assertError(self.take({}), 400, "name: A snapshot needs a name of 1 to 100 characters.")
        self.assertError(self.take({"name": "   "}), 400, "name: A snapshot needs a name of 1 to 100 characters.")
        self.assertError(self.take({"name": "x" * 101}), 400, "name: The value is longer than 100 characters.")
        self.assertError(self.take({"name": "x", "at": "noon"}), 400,
                         "at: The time (noon) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.")
        _, stranger = self.create_user("stan")
        self.assertError(self.take({"name": "mine"}, token=stranger), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("POST", "/snapshots/Nope", token=self.admin, json_body={"name": "x"}), 404,
                         "The experiment (Nope) is not present in the database.")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM snapshots"), [(2,)])

    def test_list_show_csv_delete(self):
        first = self.take({"name": "one"}).json["snapshot"]
        second = self.take({"name": "two"}).json["snapshot"]
        r = self.s.request("GET", "/snapshots/Test", token=self.token)
        self.assertEqual([s["name"] for s in r.json["snapshots"]], ["two", "one"])  # newest first
        self.assertNotIn("values", r.json["snapshots"][0])
        r = self.s.request("GET", f"/snapshots/Test/{first['id']}", token=self.token)
        self.assertEqual(r.json["snapshot"], first)
        r = self.s.request("GET", f"/snapshots/Test/{first['id']}?format=csv", token=self.token)
        self.assertEqual(r.header("Content-Type"), "text/csv; charset=utf-8")
        rows = list(csv.reader(io.StringIO(r.raw, newline="")))
        self.assertEqual(rows[0], ["pv", "value", "time"])
        self.assertEqual([row[:2] for row in rows[1:]], [["Test:M1:Fan", "150.0"], ["Test:M1:Gone", ""],
                                                         ["Test:M1:Pump", "on"], ["Test:M1:Temp", "21.5"]])
        _, other = self.create_user("otto")
        self.s.request("PUT", "/experiments/Test", token=self.admin,
                       json_body={"users_to_add": [self.s.request("GET", "/auth/users/current", token=other).json[
                           "user"]["user_id"]]})
        self.assertError(self.s.request("DELETE", f"/snapshots/Test/{first['id']}", token=other), 403,
                         "Only the user who took a snapshot and admins can delete it.")
        r = self.s.request("DELETE", f"/snapshots/Test/{first['id']}", token=self.token)
        self.assertEqual(r.json, {"messages": [f"The snapshot ({first['id']}) was successfully deleted from the database."]})
        self.assertEqual(self.s.request("DELETE", f"/snapshots/Test/{second['id']}", token=self.admin).status, 200)
        self.assertError(self.s.request("GET", f"/snapshots/Test/{first['id']}", token=self.token), 404,
                         f"The snapshot ({first['id']}) is not present in the database.")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM snapshot_values"), [(0,)])

    def test_compare_with_tolerance(self):
        snap = self.take({"name": "ref"}).json["snapshot"]
        self.fx.pv("Test:M1:Fan", samples=[[self.now - 30, 0, 150.0], [self.now - 5, 0, 160.0]])
        self.fx.pv("Test:M1:Pump", samples=[[self.now - 5, 0, "off"]])
        r = self.s.request("GET", f"/snapshots/Test/{snap['id']}/compare?tolerance=5", token=self.token)
        self.assertEqual(r.status, 200, r)
        pvs = r.json["process_variables"]
        self.assertEqual(pvs["Test:M1:Fan"], {"saved": 150.0, "current": 160.0, "delta": 10.0, "within_tolerance": False})
        self.assertEqual(pvs["Test:M1:Temp"], {"saved": 21.5, "current": 21.5, "delta": 0.0, "within_tolerance": True})
        self.assertEqual(pvs["Test:M1:Pump"], {"saved": "on", "current": "off", "delta": None, "within_tolerance": False})
        self.assertEqual(pvs["Test:M1:Gone"], {"saved": None, "current": None, "delta": None, "within_tolerance": False})
        r = self.s.request("GET", f"/snapshots/Test/{snap['id']}/compare?tolerance=20", token=self.token)
        self.assertTrue(r.json["process_variables"]["Test:M1:Fan"]["within_tolerance"])
        self.assertError(self.s.request("GET", f"/snapshots/Test/{snap['id']}/compare?tolerance=-1", token=self.token),
                         400, "tolerance: Value must be a number of at least 0.")

    def test_restore_dry_run_and_refusals(self):
        self.fx.pv("Test:M1:Gone", samples=[[self.now - 30, 0, 7.0]])
        snap = self.take({"name": "ref"}).json["snapshot"]
        # since then: a tighter guard rail on the fan, and one PV deleted
        self.s.request("PUT", "/experiments/pvs/Test:M1:Fan", token=self.admin, json_body={"setpoint_max": 120})
        self.s.request("POST", "/experiments/pvs", token=self.admin,
                       json_body={"pv_string": "Test:M1:Extra", "available_for_mqtt_publish": True})
        self.s.request("DELETE", "/experiments/pvs/Test:M1:Gone", token=self.admin)
        path = f"/snapshots/Test/{snap['id']}/restore"
        expected = {
            "Test:M1:Fan": {"outcome": "refused", "reason": "value: 150.0 is outside the allowed range [-inf, 120] of Test:M1:Fan."},
            "Test:M1:Gone": {"outcome": "skipped", "reason": "The process variable (Test:M1:Gone) is not present in the database."},
            "Test:M1:Pump": {"outcome": "would_publish"},
            "Test:M1:Temp": {"outcome": "skipped", "reason": "The requested process variable does not accept user-set values."}}
        r = self.s.request("POST", path, token=self.token, json_body={"dry_run": True})
        self.assertEqual((r.status, r.json), (200, {"results": expected}))
        self.sub.expect_nothing(0.5)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM publish_log"), [(0,)])  # a dry run writes nothing
        r = self.s.request("POST", path, token=self.token, json_body={})
        expected["Test:M1:Pump"] = {"outcome": "published"}
        self.assertEqual((r.status, r.json), (200, {"results": expected}))
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Pump", "on", 1))
        self.sub.expect_nothing(0.5)
        self.assertEqual(sorted(self.s.db("SELECT pv_string, outcome, snapshot FROM publish_log")),
                         [("Test:M1:Fan", "refused", snap["id"]), ("Test:M1:Pump", "published", snap["id"])])
        # only some PVs
        r = self.s.request("POST", path, token=self.token, json_body={"pvs": ["Test:M1:Pump"]})
        self.assertEqual(r.json, {"results": {"Test:M1:Pump": {"outcome": "published"}}})
        self.sub.get()
        # the saved value of the deleted PV stays visible
        shown = self.s.request("GET", f"/snapshots/Test/{snap['id']}", token=self.token).json["snapshot"]
        self.assertEqual(shown["values"]["Test:M1:Gone"]["value"], 7.0)
        # an export and import of the configuration leaves snapshots alone
        export = self.s.request("GET", "/file/export", token=self.admin).raw
        self.assertNotIn("snapshot", export.lower())
        self.assertEqual(self.s.request("POST", "/file/import", token=self.admin, body=export).status, 200)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM snapshot_values WHERE snapshot_id = ?", (snap["id"],)), [(4,)])
        _, stranger = self.create_user("stan")
        self.assertError(self.s.request("POST", path, token=stranger, json_body={}), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("POST", path, token=self.token, json_body={"dry_run": "yes"}), 400,
                         "dry_run: Value must be either true or false.")


class TwoInstances(SnapshotTestCase):
    def test_taken_on_one_instance_restored_on_another(self):
        b = Server(env=dict(self.server_env), args=[] if on_postgres() else ["--database", "sqlite:///" + self.s.db_path()])
        self.addCleanup(b.cleanup)
        if on_postgres():
            os.makedirs(b.dir, exist_ok=True)
            with open(os.path.join(b.dir, "pg_database"), "w") as f:
                f.write(self.s.pg_database)
        b.start()
        deadline = time.monotonic() + 30
        while "connected to the MQTT broker" not in b.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)  # B's broker connection comes up after it listens
        snap = self.take({"name": "on a"}).json["snapshot"]
        admin_b = b.login("admin", self.s.admin_password)
        admin_id = b.request("GET", "/auth/users/current", token=admin_b).json["user"]["user_id"]
        b.request("PUT", "/experiments/Test", token=admin_b, json_body={"users_to_add": [admin_id]})
        self.assertEqual([x["name"] for x in b.request("GET", "/snapshots/Test", token=admin_b).json["snapshots"]], ["on a"])
        r = b.request("POST", f"/snapshots/Test/{snap['id']}/restore", token=admin_b, json_body={"pvs": ["Test:M1:Pump"]})
        self.assertEqual((r.status, r.json), (200, {"results": {"Test:M1:Pump": {"outcome": "published"}}}))
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Pump", "on", 1))


class SnapshotsOverDBus(SnapshotTestCase):
    RTPCTL = os.path.join(os.path.dirname(os.path.abspath(SERVER)), "rtpctl")

    def setUp(self):
        self.bus = PrivateBus()
        self.addCleanup(self.bus.cleanup)
        self.extra_env = self.bus.env()
        super().setUp()
        self.env = dict(os.environ, **self.bus.env())
        deadline = time.monotonic() + 30
        while "owning the D-Bus name" not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)

    def ctl(self, *args):
        return subprocess.run([self.RTPCTL, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def test_take_list_show_restore(self):
        r = self.ctl("--json", "snapshot", "take", "Test", "shift start", "--comment", "from the workstation")
        self.assertEqual(r.returncode, 0, r.stderr)
        snap = json.loads(r.stdout)
        self.assertEqual((snap["name"], snap["comment"], snap["taken_by"]), ("shift start", "from the workstation",
                                                                              f"dbus:uid={os.getuid()}"))
        self.assertEqual(snap["values"]["Test:M1:Pump"], '"on"')
        r = self.ctl("snapshot", "list", "Test")
        self.assertIn("shift start", r.stdout)
        r = self.ctl("snapshot", "show", "Test", snap["id"])
        self.assertIn("Test:M1:Fan\t150.0", r.stdout)
        self.assertIn("Test:M1:Gone\t(no value)", r.stdout)
        r = self.ctl("snapshot", "restore", "Test", snap["id"], "--dry-run")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Test:M1:Pump\twould_publish", r.stdout)
        self.sub.expect_nothing(0.5)
        r = self.ctl("snapshot", "restore", "Test", snap["id"], "Test:M1:Pump")
        self.assertEqual((r.returncode, r.stdout), (0, "Test:M1:Pump\tpublished\n"))
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Pump", "on", 1))
        self.assertEqual(self.s.db("SELECT user_id, snapshot FROM publish_log"), [(f"dbus:uid={os.getuid()}", snap["id"])])
        r = self.ctl("snapshot", "take", "Test", "shift start")
        self.assertEqual((r.returncode, r.stderr), (1, "rtpctl: A snapshot (shift start) is already present in the database.\n"))


if __name__ == "__main__":
    main()
