"""Integration tests of /publish and /email against a real mosquitto broker."""
import json
import threading
import time
import unittest

from rtplib import Mosquitto, Server, ServerTestCase, Subscriber, main, free_port

UNREACHABLE = "The MQTT server to which this request should be forwarded cannot be reached."
SENT = "Your request has been sent to the MQTT server. It may take a while for the changes to take effect."


def announcement(email, pv, lo, hi, active, first="Ulla", last="Tester", unit="rpm"):
    return {"email": email, "pv": pv, "min_threshold": lo, "max_threshold": hi, "threshold_unit": unit, "active": active,
            "message": f"Hello {first} {last}.\nPlease check the {pv} process variable! A threshold value has been breached."}


class MqttTestCase(ServerTestCase):
    def setUp(self):
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}", "THRESHOLD_UNIT": "rpm",
                           "MQTT_CHANNEL_PREFIX": "lab", "RTP_MQTT_TIMEOUT": "2"}
        super().setUp()
        self.sub = Subscriber(self.broker.port)
        self.addCleanup(self.sub.close)
        self.wait_connected()
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
            "pv_string": "Test:M1:Fan", "available_for_mqtt_publish": True, "default_threshold_min": 0, "default_threshold_max": 100})
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Locked"})
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Other:X", "available_for_mqtt_publish": True})
        self.user, self.token = self.create_user("ulla", email="ulla@lab.example.org")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})

    def wait_connected(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any("connected to the MQTT broker" in l for l in self.s.stderr().splitlines()[-50:]):
                return
            time.sleep(0.05)
        raise AssertionError("server did not connect to the broker")

    def count_connects(self):
        return sum("connected to the MQTT broker" in l for l in self.s.stderr().splitlines())


class Publish(MqttTestCase):
    def test_values_reach_the_broker(self):
        for value, payload in [(0, "0"), (1.5, "1.5"), (-12, "-12"), ("on", "on"), ("", ""), (True, "true"), (False, "false")]:
            r = self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token, json_body={"value": value})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json, {"messages": [SENT]})
            self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", payload, 1))
        log = self.s.request("GET", "/publish/log?pv=Test:M1:Fan&limit=2", token=self.admin)
        self.assertEqual(log.status, 200)
        self.assertEqual([(e["value"], e["outcome"], e["user_id"]) for e in log.json["entries"]],
                         [("false", "published", self.user["user_id"]), ("true", "published", self.user["user_id"])])
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM publish_log"), [(7,)])
        self.assertError(self.s.request("GET", "/publish/log", token=self.token), 403, "Only administrators are allowed to access this endpoint.")

    def test_check_order(self):
        p = "/publish/Test:M1:Fan"
        self.assertError(self.s.request("PUT", p, token=self.token, body="nope"), 400, "You must provide the data in the body as JSON.")
        self.assertError(self.s.request("PUT", p, token=self.token, json_body={}), 400, "The value to be set must be supplied in the JSON body.")
        self.assertError(self.s.request("PUT", p, token=self.token, json_body={"value": None}), 400, "The value to be set must be supplied in the JSON body.")
        self.assertError(self.s.request("PUT", "/publish/Test:M1:Nope", token=self.token, json_body={"value": 1}), 404,
                         "The process variable (Test:M1:Nope) is not present in the database.")
        forbidden = "Process variable data can only be overwritten by users assigned to the associated experiment."
        self.assertError(self.s.request("PUT", "/publish/Other:X", token=self.token, json_body={"value": 1}), 403, forbidden)
        self.assertError(self.s.request("PUT", p, token=self.admin, json_body={"value": 1}), 403, forbidden)  # admins too
        self.assertError(self.s.request("PUT", "/publish/Test:M1:Locked", token=self.token, json_body={"value": 1}), 406,
                         "The requested process variable does not accept user-set values.")
        self.sub.expect_nothing()

    def test_other_requests_answered_while_broker_is_silent(self):
        done = []
        result = {}

        def publish():
            result["publish"] = self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token, json_body={"value": 7})
            done.append("publish")

        self.broker.pause()  # connected, but no acknowledgement will come
        try:
            t = threading.Thread(target=publish)
            t.start()
            time.sleep(0.2)
            r = self.s.request("GET", "/auth/users/current", token=self.token)
            done.append("get")
            self.assertEqual(r.status, 200)
            t.join(60)
        finally:
            self.broker.resume()
        self.assertEqual(done, ["get", "publish"])
        # paho may still deliver it: an unknown outcome, said so (before: "failed")
        self.assertError(result["publish"], 502, "The broker did not confirm in time; the value may still arrive.")
        self.assertEqual(self.s.db("SELECT outcome FROM publish_log"), [("unknown",)])

    def test_reconnects_after_broker_restart(self):
        before = self.count_connects()
        self.broker.stop()
        self.assertError(self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token, json_body={"value": 1}), 502, UNREACHABLE)
        self.broker.start()
        deadline = time.monotonic() + 30
        while self.count_connects() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        r = self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token, json_body={"value": 2})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sub.get(), ("lab/Test/M1/Fan", "2", 1))


class Subscriptions(MqttTestCase):
    def test_subscribe_and_unsubscribe(self):
        r = self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"subscription": {"user_id": self.user["user_id"], "pv_string": "Test:M1:Fan",
                                                   "email": "ulla@lab.example.org", "threshold_min": 0, "threshold_max": 100}})
        topic, payload, qos = self.sub.get()
        self.assertEqual((topic, qos), ("/lab/email", 1))
        self.assertEqual(json.loads(payload), announcement("ulla@lab.example.org", "Test:M1:Fan", 0, 100, 1))
        self.assertEqual(self.s.db("SELECT user_id, pv_string, email, threshold_min, threshold_max FROM subscriptions"),
                         [(self.user["user_id"], "Test:M1:Fan", "ulla@lab.example.org", 0, 100)])
        self.assertError(self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token, json_body={}), 409,
                         f"A subscription (user_id={self.user['user_id']},pv_string=Test:M1:Fan) is already present in the database.")
        r = self.s.request("GET", "/email/subscriptions", token=self.token)
        self.assertEqual(len(r.json["subscriptions"]), 1)
        self.assertEqual(self.s.request("GET", "/email/subscriptions/Test:M1:Locked", token=self.token).json, {"subscriptions": []})
        r = self.s.request("DELETE", "/email/unsubscribe/Test:M1:Fan", token=self.token, json_body={"ignored": True})
        self.assertEqual(r.json, {"message": f"Successfully deleted subscription (user_id={self.user['user_id']},pv_string=Test:M1:Fan)"})
        self.assertEqual(json.loads(self.sub.get()[1])["active"], 0)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(0,)])
        self.assertError(self.s.request("DELETE", "/email/subscribe/Test:M1:Fan", token=self.token), 404,
                         f"The subscription (user_id={self.user['user_id']},pv_string=Test:M1:Fan) is not present in the database.")

    def test_fields(self):
        r = self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token,
                           json_body={"email": "other@x.org", "threshold_min": "-5", "threshold_max": 7})
        self.assertEqual(r.json["subscription"]["threshold_min"], -5)
        self.sub.get()
        # no defaults on Locked, no email for the admin
        r = self.s.request("POST", "/email/subscribe/Test:M1:Locked", token=self.token)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json, {"errors": [["threshold_min: Missing threshold_min."], ["threshold_max: Missing threshold_max."]]})
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": ["0"]})
        r = self.s.request("POST", "/email/subscribe/Test:M1:Locked", token=self.admin)
        self.assertEqual(r.json, {"errors": [["email: Missing email."], ["threshold_min: Missing threshold_min."], ["threshold_max: Missing threshold_max."]]})
        self.assertError(self.s.request("POST", "/email/subscribe/Test:M1:Locked", token=self.token, json_body={"threshold_min": 1.5, "threshold_max": 3}),
                         400, "threshold_min and threshold_max must be integers.")
        self.assertError(self.s.request("POST", "/email/subscribe/Test:M1:Locked", token=self.token, json_body={"threshold_min": "1", "threshold_max": "x"}),
                         400, "threshold_min and threshold_max must be integers.")
        self.assertError(self.s.request("POST", "/email/subscribe/Other:X", token=self.token), 403,
                         "Only users that are assigned to the experiment can access it.")
        self.assertError(self.s.request("POST", "/email/subscribe/No:PV", token=self.token), 404,
                         "The process variable (No:PV) is not present in the database.")
        self.sub.expect_nothing()
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(1,)])

    def test_broker_down_stores_nothing(self):
        self.broker.stop()
        self.assertError(self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token), 502, UNREACHABLE)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(0,)])

    def test_unsubscribe_with_broker_down_keeps_subscription(self):
        self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token)
        self.sub.get()
        self.broker.stop()
        self.assertError(self.s.request("DELETE", "/email/subscribe/Test:M1:Fan", token=self.token), 502, UNREACHABLE)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(1,)])

    def test_cascades_go_through_the_outbox(self):
        self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token)
        self.sub.get()
        before = self.count_connects()
        self.broker.stop()
        # the broker is away: deleting the user still works and nothing is lost
        r = self.s.request("DELETE", "/auth/users/" + self.user["user_id"], token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(0,)])
        self.assertEqual(self.s.db("SELECT topic FROM mqtt_outbox"), [("/lab/email",)])
        self.broker.start()
        topic, payload, _ = self.sub.get(timeout=40)
        self.assertEqual(topic, "/lab/email")
        self.assertEqual(json.loads(payload), announcement("ulla@lab.example.org", "Test:M1:Fan", 0, 100, 0))
        deadline = time.monotonic() + 10
        while self.s.db("SELECT COUNT(*) FROM mqtt_outbox") != [(0,)] and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM mqtt_outbox"), [(0,)])

    def test_rename_and_delete_cascades(self):
        self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token)
        self.sub.get()
        r = self.s.request("PUT", "/experiments/pvs/Test:M1:Fan", token=self.admin, json_body={"pv_string": "Test:M1:Fan2"})
        self.assertEqual(r.status, 200, r)
        off, on = json.loads(self.sub.get()[1]), json.loads(self.sub.get()[1])
        self.assertEqual((off["pv"], off["active"], on["pv"], on["active"]), ("Test:M1:Fan", 0, "Test:M1:Fan2", 1))
        self.assertEqual(self.s.db("SELECT pv_string FROM subscriptions"), [("Test:M1:Fan2",)])
        r = self.s.request("DELETE", "/experiments/Test", token=self.admin)
        self.assertEqual(r.status, 200, r)
        gone = json.loads(self.sub.get()[1])
        self.assertEqual((gone["pv"], gone["active"]), ("Test:M1:Fan2", 0))
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(0,)])


    def test_large_values_are_refused_and_old_audit_entries_go(self):
        r = self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token, json_body={"value": "x" * 4097})
        self.assertError(r, 400, "value: The value is longer than 4096 bytes.")
        self.sub.expect_nothing(0.5)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM publish_log"), [(0,)])
        self.assertEqual(self.s.request("PUT", "/publish/Test:M1:Fan", token=self.token,
                                        json_body={"value": "x" * 4096}).status, 200)
        old = int((time.time() - 400 * 86400) * 1e6)
        self.s.db("INSERT INTO publish_log (id, created_us, user_id, pv_string, value, outcome) "
                  "VALUES ('old', ?, 'u', 'Test:M1:Fan', '1', 'acknowledged')", (old,))
        self.s.stop()
        self.s.start()  # pruned at start (and every hour)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM publish_log"), [(1,)])
        self.assertIn("removed 1 audit log entries older than 365 days", self.s.stderr())

    def test_unassigning_ends_the_subscriptions_to_the_experiment(self):
        self.s.request("PUT", "/experiments/Other", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        for pv in ["Test:M1:Fan", "Test:M1:Locked", "Other:X"]:
            self.assertEqual(self.s.request("POST", f"/email/subscribe/{pv}", token=self.token,
                                            json_body={"threshold_min": 1, "threshold_max": 2}).status, 200)
            self.sub.get()
        r = self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_remove": [self.user["user_id"]]})
        self.assertEqual(r.status, 200, r)
        offs = sorted((m["pv"], m["active"]) for m in (json.loads(self.sub.get()[1]) for _ in range(2)))
        self.assertEqual(offs, [("Test:M1:Fan", 0), ("Test:M1:Locked", 0)])
        self.sub.expect_nothing(0.5)
        self.assertEqual(self.s.db("SELECT pv_string FROM subscriptions"), [("Other:X",)])

    def test_an_email_is_one_address(self):
        for bad in ["x>,<y@evil.example", "a@b.c, d@e.f", "a b@c.de", "<a@b.cd>", "a@b.c;d@e.f", "\"a\"@b.cd", "a@b", "a..b@c.de"]:
            with self.subTest(bad=bad):
                r = self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token, json_body={"email": bad})
                self.assertError(r, 400, f"email: {bad} is not a valid email address")
                r = self.s.request("PUT", "/auth/users/current", token=self.token, json_body={"email": bad})
                self.assertEqual(r.json["errors"], [f"email: {bad} is not a valid email address"])
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM subscriptions"), [(0,)])
        self.assertEqual(self.s.db("SELECT email FROM users WHERE login_name = 'ulla'"), [("ulla@lab.example.org",)])
        self.assertEqual(self.s.request("POST", "/email/subscribe/Test:M1:Fan", token=self.token,
                                        json_body={"email": "first.last+tag@sub.lab-1.example.org"}).status, 200)


class NoBroker(ServerTestCase):
    server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{free_port()}"}

    def test_everything_else_works_without_a_broker(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "A:B", "available_for_mqtt_publish": True,
                                                                               "default_threshold_min": 1, "default_threshold_max": 2})
        self.s.request("PUT", "/experiments/A", token=self.admin, json_body={"users_to_add": ["0"]})
        self.assertError(self.s.request("PUT", "/publish/A:B", token=self.admin, json_body={"value": 1}), 502, UNREACHABLE)
        self.assertError(self.s.request("POST", "/email/subscribe/A:B", token=self.admin, json_body={"email": "a@b.cd"}), 502, UNREACHABLE)
        self.assertEqual(self.s.request("GET", "/experiments", token=self.admin).status, 200)


if __name__ == "__main__":
    main()
