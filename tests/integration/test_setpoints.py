"""Set-points with guard rails, read-back verification and undo (issue "Set-points with guard rails…"),
against a real mosquitto broker; read-back values come over the MQTT value topics."""
import json
import socket
import threading
import time

from rtplib import Mosquitto, ServerTestCase, Subscriber, main

SENT = "Your request has been sent to the MQTT server. It may take a while for the changes to take effect."
PV = "Test:M1:Fan"
RANGE = "value: {} is outside the allowed range [0, 2000] of Test:M1:Fan."


class SetpointTestCase(ServerTestCase):
    def setUp(self):
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}", "MQTT_CHANNEL_PREFIX": "lab",
                           "RTP_MQTT_VALUE_TOPIC_PREFIX": "lab/values", "RTP_MQTT_TIMEOUT": "2"}
        super().setUp()
        self.wait_log("reading values from MQTT topics lab/values/#")
        # a set-point sent before the server is connected is answered 502 and never published
        self.wait_log("connected to the MQTT broker")
        self.sub = Subscriber(self.broker.port)
        self.addCleanup(self.sub.close)
        r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
            "pv_string": PV, "available_for_mqtt_publish": True, "setpoint_min": 0, "setpoint_max": 2000,
            "setpoint_max_step": 500, "readback_pv": "Test:M1:Speed"})
        self.assertEqual(r.status, 200, r)
        self.s.request("POST", "/experiments/pvs", token=self.admin,
                       json_body={"pv_string": "Test:M1:Free", "available_for_mqtt_publish": True})
        # the read-back PV is one of the lab's PVs (values of unknown PVs are not read)
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Speed"})
        self.user, self.token = self.create_user("ulla")
        admin_id = self.s.request("GET", "/auth/users/current", token=self.admin).json["user"]["user_id"]
        self.s.request("PUT", "/experiments/Test", token=self.admin,
                       json_body={"users_to_add": [self.user["user_id"], admin_id]})

    def wait_log(self, text, seconds=30):
        deadline = time.monotonic() + seconds
        while text not in self.s.stderr():
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line {text!r}: " + self.s.stderr()[-2000:])
            time.sleep(0.05)

    def put(self, body, pv=PV, token=None):
        return self.s.request("PUT", f"/publish/{pv}", token=token or self.token, json_body=body)

    def log(self, pv=PV):
        return self.s.request("GET", f"/publish/log?pv={pv}", token=self.admin).json["entries"]

    def setpoint(self):
        """The next set-point on the broker (the read-back values the test sends are on '#' too)."""
        while True:
            m = self.sub.get()
            if not m[0].startswith("lab/values/"):
                return m

    def readback(self, value, pv="Test/M1/Speed"):
        import paho.mqtt.publish as publish
        publish.single(f"lab/values/{pv}", str(value), qos=1, hostname="127.0.0.1", port=self.broker.port)


class GuardRails(SetpointTestCase):
    def test_fields_in_get_update_and_export(self):
        pv = self.s.request("GET", f"/experiments/pvs/{PV}", token=self.admin).json["process_variable"]
        self.assertEqual((pv["setpoint_min"], pv["setpoint_max"], pv["setpoint_max_step"], pv["readback_pv"]),
                         (0, 2000, 500, "Test:M1:Speed"))
        free = self.s.request("GET", "/experiments/pvs/Test:M1:Free", token=self.admin).json["process_variable"]
        self.assertEqual(set(free), {"pv_string", "human_readable_name", "experiment_short_id",
                                     "available_for_mqtt_publish", "default_threshold_min", "default_threshold_max"})
        r = self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin,
                           json_body={"setpoint_max": 1500.5, "setpoint_max_step": None})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["process_variable"]["setpoint_max"], 1500.5)
        self.assertNotIn("setpoint_max_step", r.json["process_variable"])
        r = self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin,
                           json_body={"setpoint_min": "low", "setpoint_max": -1, "setpoint_max_step": 0,
                                      "readback_pv": 5})
        self.assertEqual(sorted(r.json["errors"]), [
            "readback_pv: Value must be a process variable name, or null.",
            "setpoint_max: Value must not be below setpoint_min.",
            "setpoint_max_step: Value must be a number above 0, or null.",
            "setpoint_min: Value must be a number, or null."])
        self.assertEqual(self.s.db(f"SELECT setpoint_min, setpoint_max, setpoint_max_step FROM process_variables "
                                   f"WHERE pv_string = '{PV}'"), [("0", "1500.5", None)])
        r = self.s.request("POST", "/experiments/pvs", token=self.admin,
                           json_body={"pv_string": "Test:M1:Bad", "setpoint_min": 5, "setpoint_max": 1})
        self.assertError(r, 400, "setpoint_max: Value must not be below setpoint_min.")
        export = self.s.request("GET", "/file/export", token=self.admin).raw
        fan = next(line for line in export.splitlines() if "pv_string=Test:M1:Fan" in line)
        free = next(line for line in export.splitlines() if "pv_string=Test:M1:Free" in line)
        self.assertIn(";setpoint_min=0;setpoint_max=1500.5;readback_pv=Test:M1:Speed", fan)
        self.assertNotIn("setpoint", free)  # a PV without guard rails exports what the original reads
        # and back: a fresh import keeps them
        self.s.request("DELETE", f"/experiments/pvs/{PV}", token=self.admin)
        r = self.s.request("POST", "/file/import", token=self.admin, body=export)
        self.assertEqual(r.status, 200, r)
        pv = self.s.request("GET", f"/experiments/pvs/{PV}", token=self.admin).json["process_variable"]
        self.assertEqual((pv["setpoint_min"], pv["setpoint_max"], pv["readback_pv"]), (0, 1500.5, "Test:M1:Speed"))

    def test_range_refusals_publish_nothing_and_are_audited(self):
        for value in [2500, "2500", 2000.5, -1, "-1e3"]:
            with self.subTest(value=value):
                self.assertError(self.put({"value": value}), 422, RANGE.format(value))
        self.assertError(self.put({"value": "12 rpm"}), 422,
                         "value: 12 rpm is not a number, and Test:M1:Fan only accepts numbers within its limits.")
        self.assertError(self.put({"value": True}), 422,
                         "value: true is not a number, and Test:M1:Fan only accepts numbers within its limits.")
        self.assertError(self.put({"value": "nan"}), 422,
                         "value: nan is not a number, and Test:M1:Fan only accepts numbers within its limits.")
        self.sub.expect_nothing(1)
        log = self.log()
        self.assertEqual(len(log), 8)
        self.assertEqual({e["outcome"] for e in log}, {"refused"})
        self.assertEqual(log[-1]["reason"], RANGE.format(2500))
        # a PV without guard rails takes any value, as before
        self.assertEqual(self.put({"value": "12 rpm"}, pv="Test:M1:Free").status, 200)
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Free", "12 rpm", 1))

    def test_refusals_in_the_callers_language(self):
        user, token = self.create_user("greta", preferred_language="de")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [user["user_id"]]})
        self.assertError(self.put({"value": 2500}, token=token), 422,
                         "value: 2500 liegt außerhalb des erlaubten Bereichs [0, 2000] von Test:M1:Fan.")
        self.assertError(self.put({"value": 1000}, token=token), 409,
                         "Der aktuelle Wert von Test:M1:Fan ist nicht bekannt, daher kann die Schrittgrenze nicht "
                         "geprüft werden.")

    def test_step_rule(self):
        self.assertError(self.put({"value": 1000}), 409,
                         "The current value of Test:M1:Fan is not known, so the step limit cannot be checked.")
        self.assertError(self.put({"value": 1000, "force": True}), 409,
                         "The current value of Test:M1:Fan is not known, so the step limit cannot be checked.")
        self.sub.expect_nothing(0.5)
        r = self.s.request("PUT", f"/publish/{PV}", token=self.admin, json_body={"value": "1000", "force": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"messages": [SENT]})  # the contract's answer, unchanged
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", "1000", 1))
        self.assertError(self.put({"value": "1600"}), 422,
                         "value: The change from 1000 to 1600 is larger than the allowed step of 500 for Test:M1:Fan.")
        self.assertError(self.put({"value": 400}), 422,
                         "value: The change from 1000 to 400 is larger than the allowed step of 500 for Test:M1:Fan.")
        self.assertEqual(self.put({"value": 1400}).status, 200)
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", "1400", 1))
        log = self.log()
        self.assertEqual([(e["value"], e["outcome"], e["previous"]) for e in log],
                         [("1400", "published", "1000"), ("400", "refused", "1000"), ("1600", "refused", "1000"),
                          ("1000", "published", None), ("1000", "refused", None), ("1000", "refused", None)])
        # the newest value read from the machine counts as the last known value
        self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin, json_body={"readback_pv": None})
        self.put({"value": 1450, "verify": True, "timeout_s": 1})  # watches the PV's own value topic meanwhile
        ws_value = 1900
        done = {}
        t = threading.Thread(target=lambda: done.setdefault("r", self.put({"value": 1950, "verify": True,
                                                                             "timeout_s": 10})))
        t.start()
        self.wait_log("set Test:M1:Fan to 1950")
        self.readback(ws_value, "Test/M1/Fan")
        t.join(30)
        self.assertEqual(done["r"].json["readback"], 1900)
        self.assertError(self.put({"value": 1000}), 422,
                         "value: The change from 1900 to 1000 is larger than the allowed step of 500 for Test:M1:Fan.")


class Verify(SetpointTestCase):
    def setUp(self):
        super().setUp()
        self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin, json_body={"setpoint_max_step": None})

    def verified_put(self, value, readback=None, **extra):
        done = {}
        t = threading.Thread(target=lambda: done.setdefault("r", self.put(dict({"value": value, "verify": True}, **extra))))
        t.start()
        self.assertEqual(self.setpoint(), ("lab/Test/M1/Fan", str(value), 1))
        if readback is not None:
            self.wait_log(f"set Test:M1:Fan to {value}")
            self.readback(readback)
        t.join(30)
        return done["r"]

    def test_verified_not_verified_and_timeout(self):
        r = self.verified_put(1000, 1003, tolerance=5)
        self.assertEqual((r.status, r.json), (200, {"messages": [SENT], "verified": True, "readback": 1003}))
        r = self.verified_put(1100, 1110, tolerance=5)
        self.assertEqual((r.status, r.json["verified"], r.json["readback"]), (200, False, 1110))
        r = self.verified_put(1200, 1200)
        self.assertTrue(r.json["verified"])  # tolerance 0: exact
        start = time.monotonic()
        r = self.verified_put(1300, timeout_s=1)
        self.assertEqual((r.json["verified"], r.json["readback"]), (False, None))
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual([(e["value"], e["outcome"], e.get("readback")) for e in self.log()],
                         [("1300", "not_verified", None), ("1200", "verified", "1200"),
                          ("1100", "not_verified", "1110"), ("1000", "verified", "1003")])
        # the server answered other requests while it waited (the wait does not block)
        for bad, message in [({"verify": "yes"}, "verify: Value must be either true or false."),
                             ({"tolerance": -1}, "tolerance: Value must be a number of at least 0."),
                             ({"timeout_s": 0}, "timeout_s: Value must be a whole number from 1 to 60."),
                             ({"timeout_s": 61}, "timeout_s: Value must be a whole number from 1 to 60."),
                             ({"force": 1}, "force: Value must be either true or false.")]:
            with self.subTest(bad=bad):
                self.assertError(self.put(dict({"value": 5}, **bad)), 400, message)
        self.sub.expect_nothing(0.5)

    def test_a_client_that_goes_away_cancels_the_wait(self):
        body = json.dumps({"value": 700, "verify": True, "timeout_s": 30}).encode()
        c = socket.create_connection(("127.0.0.1", self.s.port))
        c.sendall(f"PUT /publish/{PV} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"x-access-tokens: {self.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", "700", 1))
        self.wait_log("set Test:M1:Fan to 700")
        c.close()
        self.wait_log("the wait for Test:M1:Fan's read-back was cancelled")
        self.assertEqual(self.log()[0]["outcome"], "published")  # it went out; nobody waited for the read-back
        self.assertEqual(self.put({"value": 800}).status, 200)


class Revert(SetpointTestCase):
    def test_revert(self):
        self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin, json_body={"setpoint_max_step": None})
        self.put({"value": 1000})
        self.put({"value": 1400})
        self.sub.get()
        self.sub.get()
        first, second = self.log()[1], self.log()[0]
        self.assertEqual((second["value"], second["previous"]), ("1400", "1000"))
        self.assertError(self.s.request("POST", f"/publish/log/{first['id']}/revert", token=self.token), 409,
                         f"The entry {first['id']} has no previous value of Test:M1:Fan to go back to.")
        _, other = self.create_user("otto")
        self.assertError(self.s.request("POST", f"/publish/log/{second['id']}/revert", token=other), 403,
                         "Only the writer of an entry and admins can revert it.")
        self.assertError(self.s.request("POST", "/publish/log/nope/revert", token=self.token), 404,
                         "The audit log entry (nope) is not present in the database.")
        r = self.s.request("POST", f"/publish/log/{second['id']}/revert", token=self.token)
        self.assertEqual((r.status, r.json), (200, {"messages": [SENT]}))
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", "1000", 1))
        newest = self.log()[0]
        self.assertEqual((newest["value"], newest["previous"], newest["reverts"], newest["outcome"]),
                         ("1000", "1400", second["id"], "published"))
        # a revert goes through the guard rails too
        self.s.request("PUT", f"/experiments/pvs/{PV}", token=self.admin, json_body={"setpoint_max": 900})
        r = self.s.request("POST", f"/publish/log/{second['id']}/revert", token=self.admin)
        self.assertError(r, 422, "value: 1000 is outside the allowed range [0, 900] of Test:M1:Fan.")
        self.sub.expect_nothing(0.5)


if __name__ == "__main__":
    main()
