"""Alarms as control rooms know them: severities (a MINOR band inside the MAJOR band), delay, latch,
acknowledge, shelve, INVALID, the history, webhooks (a real HTTP receiver), MQTT and /live. Values come
from MQTT value topics; a /live viewer of the experiment is the barrier that says a value was judged
(the alerter hears each value before any viewer)."""
import hashlib
import hmac
import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import os
import signal
import subprocess

from rtplib import ArchiverFixture, Mosquitto, PrivateBus, Server, ServerTestCase, SmtpReceiver, Subscriber, main, SERVER

RTPCTL = os.path.join(os.path.dirname(os.path.abspath(SERVER)), "rtpctl")

PV = "Test:M1:Fan"
SECRET = "a webhook secret of some length"


def subjects(smtp):
    import email.header
    return [str(email.header.make_header(email.header.decode_header(m["Subject"]))) for m in smtp.messages()]


class WebhookReceiver:
    """A real HTTP receiver on 127.0.0.1: records POSTs (and in peers the client's address and port of
    each); answers 503 while down. HTTP/1.1: a connection stays open for the next request."""

    def __init__(self):
        self.posts = []
        self.peers = []
        self.down = False
        self.delay = 0  # seconds before answering
        self.first_delay = 0  # seconds before answering the first post
        self.answers = []  # statuses for the next requests, before it answers 200 again
        self.requests = []  # every request's body, answered or not
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delay, outer.first_delay = outer.first_delay, 0
                time.sleep(outer.delay + delay)
                outer.requests.append(body)
                status = outer.answers.pop(0) if outer.answers else 503 if outer.down else 200
                if status != 200:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.posts.append((dict(self.headers), body))
                outer.peers.append(self.client_address)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rtp-secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self):
        """The events of the posts taken, in the order they came."""
        return [json.loads(body)["event"] for _, body in self.posts]

    def requested_events(self):
        """The events of every request, answered 200 or not."""
        return [json.loads(body)["event"] for body in self.requests]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class AlarmTestCase(ServerTestCase):
    extra = {}
    smtp_per_session = None  # the SMTP receiver's limit of messages in one session (None: none)
    smtp_first_delay = None  # seconds the SMTP receiver takes over its first message

    def setUp(self):
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.smtp = SmtpReceiver(per_session=self.smtp_per_session, first_delay=self.smtp_first_delay).start()
        self.addCleanup(self.smtp.cleanup)
        self.server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}",
                           "RTP_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}", "RTP_SMTP_FROM": "alerts@lab.example.org",
                           "RTP_MONITOR_INTERVAL": "0.2", "THRESHOLD_UNIT": "rpm", "ARCHIVER_TIMEZONE": "Europe/Berlin",
                           "RTP_MQTT_VALUE_TOPIC_PREFIX": "lab/values", "RTP_ALARM_SILENCE_INTERVALS": "0",
                           "RTP_ALERT_RENOTIFY_S": "0"}
        self.server_env.update(self.extra)
        super().setUp()
        self.wait_log("reading values from MQTT topics lab/values/#")
        self.wait_log("connected to the MQTT broker")  # subscribing is announced over MQTT first
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
            "pv_string": PV, "default_threshold_min": 0, "default_threshold_max": 100})
        self.user, self.token = self.create_user("ulla", email="ulla@lab.example.org")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        self.ws = None

    def wait_log(self, text, seconds=30):
        deadline = time.monotonic() + seconds
        while text not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(text, self.s.stderr())

    def wait_for(self, what, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(0.05)
        self.fail("condition not reached")

    def subscribe(self, **keys):
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token, json_body=keys)
        self.assertEqual(r.status, 200, r)
        return r.json["subscription"]

    def viewer(self, server=None):
        import websocket
        ws = websocket.create_connection((server or self.s).url.replace("http://", "ws://") + "live/Test",
                                         subprotocols=["rtp.v1", self.token], timeout=20)
        self.addCleanup(ws.close)
        return ws

    def send(self, value, server=None):
        """Publishes @value and returns once the alerter has judged it (a viewer received it), with the
        alarm messages the viewer got meanwhile. @server: whose viewer waits (the leading instance's)."""
        import paho.mqtt.publish as publish
        if server is not None and server is not self.s:
            if getattr(server, "ws", None) is None:
                server.ws = self.viewer(server)
                time.sleep(0.3)
            ws = server.ws
        else:
            if self.ws is None:
                self.ws = self.viewer()
                time.sleep(0.3)  # the server's subscription to the value topics is in place
            ws = self.ws
        publish.single("lab/values/Test/M1/Fan", str(value), qos=1, hostname="127.0.0.1", port=self.broker.port)
        alarms = []
        while True:
            m = json.loads(ws.recv())
            if "alarm" in m:
                alarms.append(m["alarm"])
            elif m.get("pv") == PV and m.get("data") == value:
                return alarms

    def second(self, env=None):
        """Another server on the same database."""
        b = Server(env=dict(env or self.server_env), args=["--database", self.s.database_uri()])
        self.addCleanup(b.cleanup)
        b.start()
        return b

    def alarms(self, token=None, query=""):
        r = self.s.request("GET", "/alarms" + query, token=token or self.token)
        self.assertEqual(r.status, 200, r)
        return r.json["alarms"]

    def history(self, alarm_id, token=None):
        r = self.s.request("GET", f"/alarms/{alarm_id}/history", token=token or self.token)
        self.assertEqual(r.status, 200, r)
        return r.json["history"]

    def transitions(self, alarm_id):
        return [(e["event"], e["severity"]) for e in self.history(alarm_id) if e["event"] != "notified"]

    def add_pvs(self, pvs):
        """Creates @pvs with the band [0, 100]."""
        for pv in pvs:
            r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
                "pv_string": pv, "default_threshold_min": 0, "default_threshold_max": 100})
            self.assertEqual(r.status, 200, r)

    def subscribe_all(self, pvs):
        """Subscribes the test's user to each of @pvs, with the defaults."""
        for pv in pvs:
            r = self.s.request("POST", f"/email/subscribe/{pv}", token=self.token, json_body={})
            self.assertEqual(r.status, 200, r)

    def values_client(self):
        """An MQTT client on the broker, stopped by the test's cleanup."""
        import paho.mqtt.client as mqtt
        client = mqtt.Client()
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        self.addCleanup(client.loop_stop)
        self.addCleanup(client.disconnect)
        return client

    def publish_each(self, pvs, value):
        """One value for each of @pvs, in order, each acknowledged by the broker (QoS 1)."""
        client = self.values_client()
        for pv in pvs:
            client.publish("lab/values/" + pv.replace(":", "/"), value, qos=1).wait_for_publish(10)


class Severities(AlarmTestCase):
    def test_minor_major_minor_in(self):
        mqtt = Subscriber(self.broker.port)
        self.addCleanup(mqtt.client.loop_stop)
        self.subscribe(warning_min=20, warning_max=80)
        self.send(50)
        self.assertEqual(self.alarms(), [])
        opened = self.send(85)
        self.assertEqual([(a["severity"], a["active"]) for a in opened], [("MINOR", True)])
        self.send(120)
        self.send(85)
        self.send(50)
        alarm = self.alarms(query="?state=all")[0]
        self.assertEqual((alarm["severity"], alarm["active"], alarm["notifications"]), ("MINOR", False, 2))
        self.assertIsNotNone(alarm["ended"])
        self.assertEqual(self.alarms(), [])  # the default view: not ended
        self.assertEqual(self.transitions(alarm["id"]),
                         [("opened", "MINOR"), ("escalated", "MAJOR"), ("deescalated", "MINOR"), ("cleared", "MINOR"),
                          ("ended", "MINOR")])
        self.assertEqual([e["channel"] for e in self.history(alarm["id"]) if e["event"] == "notified"],
                         ["email", "email"])
        self.wait_for(lambda: len(self.smtp.messages()) >= 2)
        time.sleep(0.3)
        self.assertEqual(sorted(subjects(self.smtp)),
                         ["Escalated to MAJOR: Test:M1:Fan is 120 rpm", "Warning (MINOR): Test:M1:Fan is 85 rpm"])
        body = [m for m in self.smtp.messages() if "MINOR" in m["Subject"]][0].get_payload(decode=True).decode()
        self.assertIn("Severity: MINOR", body)
        # every transition on MQTT, in order
        events = []
        deadline = time.monotonic() + 20
        while len(events) < 5 and time.monotonic() < deadline:
            topic, payload, qos = mqtt.get()
            if topic == "rtp/alarms/Test":
                message = json.loads(payload)
                events.append(message["event"])
                self.assertEqual(message["alarm"]["id"], alarm["id"])
        self.assertEqual(events, ["opened", "escalated", "deescalated", "cleared", "ended"])

    def test_notify_clear(self):
        self.subscribe(notify_clear=True)
        self.send(150)
        self.send(50)
        self.wait_for(lambda: len(self.smtp.messages()) >= 2)
        self.assertEqual(sorted(subjects(self.smtp)),
                         ["Back in its band: Test:M1:Fan is 50 rpm", "Threshold breached: Test:M1:Fan is 150 rpm"])

    def test_german_subscriber(self):
        self.s.request("PUT", "/auth/users/current", token=self.token, json_body={"preferred_language": "de"})
        self.subscribe(warning_max=80)
        self.send(85)
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)
        self.assertEqual(subjects(self.smtp), ["Warnung (MINOR): Test:M1:Fan ist 85 rpm"])
        body = self.smtp.messages()[0].get_payload(decode=True).decode()
        self.assertIn("Schweregrad: MINOR", body)
        r = self.s.request("POST", "/alarms/" + self.alarms()[0]["id"] + "/shelve", token=self.token,
                           json_body={"seconds": 60}, headers={"Accept-Language": "de"})
        self.assertError(r, 400, "reason: Für das Zurückstellen ist ein Grund nötig.")

    def test_settings_are_checked(self):
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token, json_body={"warning_min": -5})
        self.assertError(r, 400, "warning_min: The warning band must lie inside the threshold band [0, 100].")
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token, json_body={"latch": "yes"})
        self.assertError(r, 400, "latch: Value must be either true or false.")
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token, json_body={"delay_s": 10 ** 6})
        self.assertError(r, 400, "delay_s: Value must be a whole number of seconds from 0 to 86400.")
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token,
                           json_body={"warning_min": 60, "warning_max": 40})
        self.assertError(r, 400, "warning_min: warning_min must not be greater than warning_max.")
        self.assertEqual(self.s.request("GET", "/email/subscriptions", token=self.token).json, {"subscriptions": []})
        # the answer of a plain subscription is the contract's, without the new keys
        self.assertEqual(set(self.subscribe()), {"user_id", "pv_string", "email", "threshold_min", "threshold_max"})
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=self.token, json_body={"warning_max": 90, "latch": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["subscription"]["warning_max"], r.json["subscription"]["latch"]), (90, True))
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=self.token, json_body={"warning_max": 101})
        self.assertError(r, 400, "warning_max: The warning band must lie inside the threshold band [0, 100].")
        _, other = self.create_user("otto")
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=other,
                           json_body={"user_id": self.user["user_id"], "latch": False})
        self.assertEqual(r.status, 403, r)
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=self.admin,
                           json_body={"user_id": self.user["user_id"], "warning_max": None})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("warning_max", r.json["subscription"])
        self.assertEqual(self.s.request("PUT", "/alarms/subscriptions/Test:M1:Nope", token=self.token,
                                        json_body={"latch": True}).status, 404)


class DelayLatchShelve(AlarmTestCase):
    def test_delay(self):
        self.subscribe(delay_s=1)
        self.send(150)
        self.send(50)  # back within the delay: nothing opens
        time.sleep(1.5)
        self.assertEqual(self.alarms(query="?state=all"), [])
        self.send(150)
        # no further value: the delay runs out and the last value opens the alarm
        alarm = self.wait_for(lambda: self.alarms())[0]
        self.assertEqual(alarm["severity"], "MAJOR")
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)

    def test_latch_and_acknowledge(self):
        self.subscribe(latch=True)
        self.send(150)
        self.send(50)
        alarm = self.alarms()[0]
        self.assertEqual((alarm["active"], alarm["latched"], alarm["ended"]), (False, True, None))
        r = self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token, json_body={"comment": "seen"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["alarm"]["acknowledged"]["by"], self.user["user_id"])
        self.assertEqual(r.json["alarm"]["acknowledged"]["comment"], "seen")
        self.assertIsNotNone(r.json["alarm"]["ended"])
        self.assertEqual(self.transitions(alarm["id"])[-2:], [("acknowledged", "MAJOR"), ("ended", "MAJOR")])
        r = self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token)
        self.assertError(r, 409, "The alarm has already ended.")

    def test_shelve(self):
        self.subscribe(warning_min=20, warning_max=80)
        self.send(85)
        alarm = self.alarms()[0]
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)
        path = f"/alarms/{alarm['id']}/shelve"
        self.assertError(self.s.request("POST", path, token=self.token, json_body={"seconds": 60}), 400,
                         "reason: A reason for shelving is required.")
        self.assertEqual(self.s.request("POST", path, token=self.token,
                                        json_body={"seconds": 10 ** 7, "reason": "x"}).status, 400)
        self.assertEqual(self.s.request("POST", path, token=self.token,
                                        json_body={"until": "2001-01-01 00:00", "reason": "x"}).status, 400)
        r = self.s.request("POST", path, token=self.token, json_body={"seconds": 1, "reason": "maintenance"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["alarm"]["shelved"]["reason"], "maintenance")
        self.send(120)  # escalates while shelved: no mail
        self.assertEqual(len(self.smtp.messages()), 1)
        # the shelve runs out while the value is still out: one notification
        self.wait_for(lambda: len(self.smtp.messages()) >= 2)
        time.sleep(1.5)
        self.assertEqual(sorted(subjects(self.smtp)),
                         ["Shelving ended, still out of its band: Test:M1:Fan is 120 rpm",
                          "Warning (MINOR): Test:M1:Fan is 85 rpm"])
        events = [e["event"] for e in self.history(alarm["id"]) if e["event"] != "notified"]
        self.assertEqual(events, ["opened", "shelved", "escalated", "unshelved"])
        # shelving by hand and back
        r = self.s.request("POST", path, token=self.token, json_body={"seconds": 600, "reason": "work"})
        self.assertIsNotNone(r.json["alarm"]["shelved"])
        r = self.s.request("DELETE", path, token=self.token)
        self.assertEqual((r.status, r.json["alarm"]["shelved"]), (200, None))


class Reminders(AlarmTestCase):
    extra = {"RTP_ALERT_RENOTIFY_S": "1"}

    def test_acknowledge_stops_reminders(self):
        self.subscribe()
        deadline = time.monotonic() + 10
        while len(self.smtp.messages()) < 2 and time.monotonic() < deadline:
            self.send(150)
            time.sleep(0.2)
        self.assertGreaterEqual(len(self.smtp.messages()), 2)
        self.assertIn("Reminder: Test:M1:Fan is still out of its band: 150 rpm", subjects(self.smtp))
        alarm = self.alarms()[0]
        r = self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.json["alarm"]["ended"])  # still out of band
        time.sleep(0.5)
        count = len(self.smtp.messages())
        for _ in range(12):
            self.send(150)
            time.sleep(0.2)
        self.assertEqual(len(self.smtp.messages()), count)

    def test_restart_keeps_acknowledgement(self):
        self.subscribe()
        self.send(150)
        alarm = self.alarms()[0]
        self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token)
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)
        self.ws.close()
        self.ws = None
        self.s.stop()
        self.s.start()
        self.token = self.s.login("ulla", self.user_password) if hasattr(self, "user_password") else self.token
        self.wait_log("reading values from MQTT topics lab/values/#")
        for _ in range(8):
            self.send(150)
            time.sleep(0.2)
        after = self.alarms()
        self.assertEqual([(a["id"], a["acknowledged"]["by"]) for a in after], [(alarm["id"], self.user["user_id"])])
        self.assertEqual(len(self.smtp.messages()), 1)


class TwoInstances(AlarmTestCase):
    """Two servers on one database (one SQLite file, or one PostgreSQL database): one of them judges
    values and sends; the other takes over when it ends."""
    extra = {"RTP_ALERT_RENOTIFY_S": "1", "SECRET_KEY": "a shared signing key of more than 32 bytes for both"}

    def test_acknowledged_on_one_stops_reminders_of_the_other(self):
        self.subscribe()
        b = self.second()
        deadline = time.monotonic() + 15
        while len(self.smtp.messages()) < 2 and time.monotonic() < deadline:
            self.send(150)
            time.sleep(0.2)
        self.assertGreaterEqual(len(self.smtp.messages()), 2)  # opened, and a reminder
        alarm = self.alarms()[0]
        r = b.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token)  # on the other instance
        self.assertEqual(r.status, 200, r)
        time.sleep(0.5)
        count = len(self.smtp.messages())
        for _ in range(12):
            self.send(150)
            time.sleep(0.2)
        self.assertEqual(len(self.smtp.messages()), count)
        self.assertEqual(len(self.alarms()), 1)  # one alarm, whichever instance judged

    def test_the_latest_value_reaches_the_other_instance_and_outlives_a_stop(self):
        """A value that leaves the alarm's level as it was is written a moment later, not at once (a
        write empties every kept value): the judging instance shows it at once, the other one within
        a few seconds, and a stop writes what is waiting."""
        self.subscribe()
        b = self.second()
        self.send(150)
        self.send(155)
        self.send(160)
        self.assertEqual([(a["severity"], a["value"]) for a in self.alarms()], [("MAJOR", "160")])
        self.wait_for(lambda: [a["value"] for a in self.alarms_on(b)] == ["160"], seconds=10)
        self.assertEqual(self.transitions(self.alarms()[0]["id"]), [("opened", "MAJOR")])
        self.send(170)
        self.s.stop()  # SIGTERM: what waits is written before the end
        self.assertEqual([a["value"] for a in self.alarms_on(b)], ["170"])

    def alarms_on(self, server):
        r = server.request("GET", "/alarms", token=self.token)
        self.assertEqual(r.status, 200, r)
        return r.json["alarms"]


class OneSender(AlarmTestCase):
    """Each mail and each webhook call goes out once, though both instances run their outbox timers
    (every second) and the receiver takes longer than that to answer."""
    leader_line = "now runs the jobs of one instance only"

    def setUp(self):
        self.hook = WebhookReceiver()
        self.hook.delay = 1.5
        self.addCleanup(self.hook.stop)
        self.extra = dict(TwoInstances.extra, RTP_ALERT_RENOTIFY_S="0", RTP_ALERT_WEBHOOK_URL=self.hook.url)
        super().setUp()

    def test_each_transition_is_sent_once_and_the_other_instance_takes_over(self):
        self.subscribe(warning_max=80)
        b = self.second()
        deadline = time.monotonic() + 20
        while self.leader_line not in self.s.stderr() + b.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)  # both outbox timers ran
        leaders = [x for x in (self.s, b) if self.leader_line in x.stderr()]
        self.assertEqual(len(leaders), 1, (self.s.stderr()[-2000:], b.stderr()[-2000:]))
        leader, other = leaders[0], (b if leaders[0] is self.s else self.s)

        self.send(90, server=leader)  # MINOR; both instances hear the value
        self.wait_for(lambda: self.hook.posts and self.smtp.messages())
        time.sleep(3.5)  # two more deliveries of the webhook's slow answer, three outbox ticks of each
        self.assertEqual(subjects(self.smtp), ["Warning (MINOR): Test:M1:Fan is 90 rpm"])
        self.assertEqual(self.hook.events(), ["opened"])

        leader.stop(sig=signal.SIGKILL, expect_status=None)
        deadline = time.monotonic() + 30
        while self.leader_line not in other.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(self.leader_line, other.stderr())
        self.send(150, server=other)  # MAJOR: judged and sent by the one left
        self.wait_for(lambda: len(self.hook.posts) >= 2 and len(self.smtp.messages()) >= 2)
        time.sleep(3.5)
        self.assertEqual(subjects(self.smtp), ["Warning (MINOR): Test:M1:Fan is 90 rpm",
                                               "Escalated to MAJOR: Test:M1:Fan is 150 rpm"])
        self.assertEqual(self.hook.events(), ["opened", "escalated"])
        r = other.request("GET", "/alarms", token=self.token)
        self.assertEqual([(a["severity"], a["notifications"]) for a in r.json["alarms"]], [("MAJOR", 2)])


class Permissions(AlarmTestCase):
    def test_who_may_see_and_act(self):
        self.subscribe()
        self.send(150)
        alarm = self.alarms()[0]
        _, stranger = self.create_user("stranger")
        colleague, colleague_token = self.create_user("colleague")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [colleague["user_id"]]})
        self.assertEqual(self.alarms(token=stranger), [])
        self.assertEqual(self.s.request("GET", f"/alarms/{alarm['id']}/history", token=stranger).status, 404)
        self.assertEqual(self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=stranger).status, 403)
        self.assertEqual(self.s.request("POST", f"/alarms/{alarm['id']}/shelve", token=stranger,
                                        json_body={"seconds": 60, "reason": "x"}).status, 403)
        self.assertEqual(self.s.request("POST", "/alarms/no-such-alarm/acknowledge", token=self.admin).status, 404)
        self.assertEqual([a["id"] for a in self.alarms(token=colleague_token)], [alarm["id"]])
        self.assertEqual([a["id"] for a in self.alarms(token=self.admin, query="?experiment=Test&severity=MAJOR")],
                         [alarm["id"]])
        self.assertEqual(self.alarms(token=self.admin, query="?experiment=Other"), [])
        self.assertEqual(self.s.request("GET", "/alarms?state=bogus", token=self.admin).status, 400)
        r = self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=colleague_token)
        self.assertEqual(r.json["alarm"]["acknowledged"]["by"], colleague["user_id"])
        # the subscriber removed from the experiment: the subscription goes, and the alarm ends
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_remove": [self.user["user_id"]]})
        ended = self.wait_for(lambda: [a for a in self.alarms(token=self.admin, query="?state=all") if a["ended"]],
                              seconds=5)
        self.assertEqual(ended[0]["id"], alarm["id"])


class HostileInput(AlarmTestCase):
    def test_bad_bodies_change_nothing(self):
        self.subscribe()
        self.send(150)
        alarm = self.alarms()[0]
        path = f"/alarms/{alarm['id']}"
        bad = [
            ("POST", "/shelve", '{"seconds": 99999999999999999999999, "reason": "x"}'),
            ("POST", "/shelve", '{"seconds": 60, "reason": "a\\u0000b"}'),
            ("POST", "/shelve", json.dumps({"seconds": 60, "reason": "x" * 1001})),
            ("POST", "/shelve", '{"seconds": 60, "reason": ' + "[" * 100 + "]" * 100 + "}"),
            ("POST", "/shelve", '{"seconds": "60", "reason": "x"}'),
            ("POST", "/shelve", '{"until": "not a time", "reason": "x"}'),
            ("POST", "/shelve", '{"seconds": -5, "reason": "x"}'),
            ("POST", "/acknowledge", '{"comment": 5}'),
            ("POST", "/acknowledge", '{"comment": "a\\u0000b"}'),
            ("POST", "/acknowledge", json.dumps({"comment": "x" * 1001})),
        ]
        for method, tail, body in bad:
            r = self.s.request(method, path + tail, token=self.token, body=body)
            self.assertEqual(r.status, 400, (tail, body[:60], r))
        after = self.alarms()[0]
        self.assertEqual((after["acknowledged"], after["shelved"]), (None, None))
        self.assertEqual([e["event"] for e in self.history(alarm["id"]) if e["event"] != "notified"], ["opened"])
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=self.token,
                           body='{"warning_min": 1e400}')
        self.assertEqual(r.status, 400, r)
        r = self.s.request("GET", "/alarms?experiment=" + "x" * 5000 + "&severity=%00", token=self.token)
        self.assertEqual(r.status, 400, r)


class Invalid(AlarmTestCase):
    extra = {"RTP_ALARM_SILENCE_INTERVALS": "3"}

    def test_silence_is_invalid(self):
        self.subscribe()
        alarm = self.wait_for(lambda: self.alarms())[0]
        self.assertEqual(alarm["severity"], "INVALID")
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)
        self.assertEqual(subjects(self.smtp), ["No valid value: Test:M1:Fan has sent none for a while"])
        self.send(50)  # a value in band: it clears and ends
        self.assertIsNotNone(self.alarms(query="?state=all")[0]["ended"])

    def test_many_pvs_silent_at_once(self):
        """A power cut: many PVs fall silent together. They are judged INVALID in batches between which
        requests are answered (a GET /alarms sees several counts between none and all; before, the
        main loop judged them all in one go and answered nothing meanwhile); each gets one INVALID
        alarm and one mail, none is skipped."""
        import threading
        n = 200
        pvs = [f"Test:S{i}" for i in range(n)]
        self.add_pvs(pvs)
        client = self.values_client()
        stop = threading.Event()

        def publish():  # every PV heard every 0.1 s (silent after 3 x 0.2 s), until the cut
            while not stop.is_set():
                for pv in pvs:
                    client.publish("lab/values/" + pv.replace(":", "/"), "50", qos=0)
                stop.wait(0.1)
        publisher = threading.Thread(target=publish)
        publisher.start()
        self.addCleanup(stop.set)
        self.subscribe_all(pvs)
        time.sleep(1.5)  # a rejudge tick with every PV subscribed and heard
        self.assertEqual(self.alarms(), [])
        stop.set()
        publisher.join()
        counts = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not counts or counts[-1] < n):
            counts.append(len(self.alarms()))
        between = sorted({c for c in counts if 0 < c < n})
        self.assertEqual(counts[-1], n)
        self.assertGreaterEqual(len(between), 3, between)
        self.wait_for(lambda: len(self.smtp.messages()) >= n, seconds=60)
        alarms = self.alarms()
        self.assertEqual(sorted(a["pv_string"] for a in alarms), sorted(pvs))
        self.assertEqual({a["severity"] for a in alarms}, {"INVALID"})
        self.assertEqual({a["notifications"] for a in alarms}, {1})
        # one mail per notification, none twice. On a loaded machine a value still on its way at the cut
        # may arrive after its PV was judged silent: that alarm ends (back in band) and the next silence
        # opens another, with a mail of its own
        time.sleep(1.5)  # a tick of the outbox: nothing more goes out
        everything = self.alarms(query="?state=all")
        ended = [a["pv_string"] for a in everything if a["ended"] is not None]
        self.assertEqual(len(self.smtp.messages()), sum(a["notifications"] for a in everything),
                         (ended, [line for line in self.s.stderr().splitlines() if "mail" in line][-20:]))
        self.assertEqual(sorted(subjects(self.smtp)),
                         sorted(f"No valid value: {a['pv_string']} has sent none for a while" for a in everything))

    def test_values_settled_on_arrival_are_heard(self):
        """Without viewers, in-band values are settled on paho's thread: they still count as heard,
        and a PV that falls silent afterwards is INVALID; its next value ends that."""
        self.subscribe()
        client = self.values_client()

        def publish_for(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                client.publish("lab/values/Test/M1/Fan", "50", qos=1).wait_for_publish(5)
                time.sleep(0.05)

        publish_for(1)  # an INVALID alarm of the silence before ends with the first value
        self.wait_for(lambda: self.alarms() == [])
        settled, ever = self.mqtt_received("settled"), len(self.alarms(query="?state=all"))
        publish_for(2)  # 3 monitor intervals of silence fit many times into this
        self.assertGreater(self.mqtt_received("settled"), settled)
        self.assertEqual(len(self.alarms(query="?state=all")), ever)  # no INVALID alarm meanwhile
        alarm = self.wait_for(lambda: self.alarms())[0]  # silent now
        self.assertEqual(alarm["severity"], "INVALID")
        client.publish("lab/values/Test/M1/Fan", "50", qos=1).wait_for_publish(5)
        self.wait_for(lambda: self.alarms() == [])


class AlarmedValuesSettled(AlarmTestCase):
    """Without viewers, the values that leave an open alarm as it was are settled on paho's thread too
    (for a second at most at a time); what changes the alarm still reaches the main loop at once."""
    extra = {"RTP_ALERT_RENOTIFY_S": "1"}

    def stream(self, client, values, seconds):
        """Publishes @values in turn, 20 a second, for @seconds, each acknowledged by the broker; returns
        the last one published."""
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            client.publish("lab/values/Test/M1/Fan", str(values[i % len(values)]), qos=1).wait_for_publish(5)
            i += 1
            time.sleep(0.05)
        return values[(i - 1) % len(values)]

    def test_escalation_and_end_while_values_are_settled(self):
        self.subscribe(warning_max=80)
        client = self.values_client()
        client.publish("lab/values/Test/M1/Fan", "90", qos=1).wait_for_publish(5)
        alarm = self.wait_for(lambda: self.alarms())[0]
        self.assertEqual(alarm["severity"], "MINOR")
        r = self.s.request("POST", f"/alarms/{alarm['id']}/acknowledge", token=self.token)  # no reminders
        self.assertEqual(r.status, 200, r)
        settled = self.mqtt_received("settled")
        last = self.stream(client, [85, 95, 91], 2)
        self.assertGreater(self.mqtt_received("settled"), settled + 10)  # old code: none while in alarm
        # the judging instance shows the latest value, settled or not (at once: the wait is for the broker)
        self.wait_for(lambda: self.alarms()[0]["value"] == str(last), seconds=2)
        self.assertEqual(self.transitions(alarm["id"]), [("opened", "MINOR"), ("acknowledged", "MINOR")])
        # leaving the MINOR band reaches the main loop at once, settled values or not
        client.publish("lab/values/Test/M1/Fan", "150", qos=1).wait_for_publish(5)
        self.wait_for(lambda: self.alarms()[0]["severity"] == "MAJOR", seconds=5)
        self.stream(client, [150, 160], 1.5)
        self.assertEqual(self.alarms()[0]["severity"], "MAJOR")
        client.publish("lab/values/Test/M1/Fan", "50", qos=1).wait_for_publish(5)
        self.wait_for(lambda: self.alarms() == [], seconds=5)
        self.assertEqual(self.transitions(alarm["id"]),
                         [("opened", "MINOR"), ("acknowledged", "MINOR"), ("escalated", "MAJOR"),
                          ("cleared", "MAJOR"), ("ended", "MAJOR")])
        # a new excursion opens a new alarm: nothing of the old one's range is left in the gate
        client.publish("lab/values/Test/M1/Fan", "150", qos=1).wait_for_publish(5)
        again = self.wait_for(lambda: self.alarms())[0]
        self.assertNotEqual(again["id"], alarm["id"])
        self.assertEqual(again["severity"], "MAJOR")

    def test_in_band_out_and_back_without_viewers(self):
        """In-band values settled, one out of band opens an alarm, the next in band ends it: the
        range settled before the alarm is not used for the values after it (it was, until 2026-12-07:
        the alarm stayed open while the PV was back in band)."""
        self.subscribe()
        client = self.values_client()
        settled = self.mqtt_received("settled")
        self.stream(client, [50, 60], 1)
        self.assertGreater(self.mqtt_received("settled"), settled)
        client.publish("lab/values/Test/M1/Fan", "150", qos=1).wait_for_publish(5)
        alarm = self.wait_for(lambda: self.alarms())[0]
        self.stream(client, [50, 60], 1.5)
        self.wait_for(lambda: self.alarms() == [], seconds=5)
        self.assertEqual(self.transitions(alarm["id"]), [("opened", "MAJOR"), ("cleared", "MAJOR"), ("ended", "MAJOR")])

    def test_reminders_and_shelve_expiry_while_values_are_settled(self):
        self.subscribe()
        client = self.values_client()
        client.publish("lab/values/Test/M1/Fan", "150", qos=1).wait_for_publish(5)
        alarm = self.wait_for(lambda: self.alarms())[0]
        settled = self.mqtt_received("settled")
        self.stream(client, [150, 155], 3.5)  # reminders fall due meanwhile: one a second
        self.assertGreater(self.mqtt_received("settled"), settled + 10)
        self.wait_for(lambda: len(self.smtp.messages()) >= 3)  # opened, and reminders
        self.assertGreaterEqual(len([s for s in subjects(self.smtp)
                                     if s.startswith("Reminder: Test:M1:Fan is still out of its band: 15")]), 2)
        r = self.s.request("POST", f"/alarms/{alarm['id']}/shelve", token=self.token,
                           json_body={"seconds": 2, "reason": "maintenance"})
        self.assertEqual(r.status, 200, r)
        time.sleep(0.5)  # a reminder on its way may still go
        count = len(self.smtp.messages())
        self.stream(client, [150, 155], 1)  # shelved: nothing
        self.assertEqual(len(self.smtp.messages()), count)
        self.stream(client, [150, 155], 2)  # the shelve runs out while the values are out: one notification
        self.wait_for(lambda: any(s.startswith("Shelving ended") for s in subjects(self.smtp)), seconds=5)
        events = [e["event"] for e in self.history(alarm["id"]) if e["event"] != "notified"]
        self.assertEqual(events, ["opened", "shelved", "unshelved"])


class Flood(AlarmTestCase):
    # both receivers take 3 s over the first message: meanwhile every alarm opens (on any machine), and
    # what the test sees is how the waiting rest goes out, not how fast the alarms opened
    smtp_first_delay = 3

    def setUp(self):
        self.hook = WebhookReceiver()
        self.hook.first_delay = 3
        self.addCleanup(self.hook.stop)
        self.extra = {"RTP_ALERT_WEBHOOK_URL": self.hook.url}
        super().setUp()

    def test_many_mails_and_posts_share_connections(self):
        """An alarm flood: the mails and webhook posts of many alarms opened together go out several
        over one connection (before, each had a connection of its own: with TLS, and AUTH at a real
        mail relay, a handshake each). Each arrives once; the posts in the order the alarms opened."""
        n = 30
        pvs = [f"Test:F{i}" for i in range(n)]
        self.add_pvs(pvs)
        self.subscribe_all(pvs)
        self.publish_each(pvs, "150")
        self.wait_for(lambda: len(self.smtp.messages()) >= n, seconds=60)
        time.sleep(1.5)  # a tick of the outbox: nothing is sent again
        self.assertEqual(sorted(subjects(self.smtp)), sorted(f"Threshold breached: {pv} is 150 rpm" for pv in pvs))
        sessions = {m["X-Peer"] for m in self.smtp.messages()}  # the client's address and port
        self.assertLessEqual(len(sessions), n // 3, sessions)
        alarms = self.alarms()
        self.assertEqual({a["notifications"] for a in alarms}, {1})
        self.wait_for(lambda: len(self.hook.posts) >= n)
        events = [json.loads(body) for _, body in self.hook.posts]
        self.assertEqual([e["event"] for e in events], ["opened"] * n)
        self.assertEqual(sorted(e["alarm"]["pv_string"] for e in events), sorted(pvs))
        since = {a["pv_string"]: a["since"] for a in alarms}  # same zone and format: they sort as text
        posted = [since[e["alarm"]["pv_string"]] for e in events]
        self.assertEqual(posted, sorted(posted))
        self.assertLessEqual(len(set(self.hook.peers)), n // 3, self.hook.peers)


class RelayLimit(AlarmTestCase):
    """A relay that takes 3 mails per connection and refuses the 4th with 421: the refused mail is
    tried again after its back-off, the rest of its batch in the next; each arrives once."""
    smtp_per_session = 3
    smtp_first_delay = 3  # the other nine alarms open meanwhile: the next batch is longer than 3

    def test_a_refusal_mid_batch_loses_nothing_and_sends_nothing_twice(self):
        n = 10
        pvs = [f"Test:L{i}" for i in range(n)]
        self.add_pvs(pvs)
        self.subscribe_all(pvs)
        self.publish_each(pvs, "150")
        self.wait_for(lambda: len(self.smtp.messages()) >= n, seconds=60)
        time.sleep(1.5)  # a tick of the outbox: nothing is sent again
        self.assertEqual(sorted(subjects(self.smtp)), sorted(f"Threshold breached: {pv} is 150 rpm" for pv in pvs))
        sessions = {}
        for m in self.smtp.messages():
            sessions[m["X-Peer"]] = sessions.get(m["X-Peer"], 0) + 1
        self.assertLessEqual(max(sessions.values()), 3, sessions)
        self.assertGreaterEqual(len(sessions), 4, sessions)
        # the log says what the relay answered (libcurl alone says "Weird server reply")
        self.assertIn("(the server's last reply: 421 4.7.0 Too many messages in one session, closing)",
                      self.s.stderr())


class EpicsInvalid(AlarmTestCase):
    """From the archiver: a sample whose EPICS severity is INVALID (3) makes the alarm INVALID and
    its value is not judged; the next valid sample is."""

    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.extra = {"ARCHIVER_URL": self.fx.url, "RTP_MQTT_VALUE_TOPIC_PREFIX": ""}
        self.now = int(time.time())
        super().setUp()

    def wait_log(self, text, seconds=30):
        if "MQTT topics" not in text:
            super().wait_log(text, seconds)

    def test_invalid_severity_from_the_archiver(self):
        self.fx.pv(PV, samples=[[self.now - 20, 0, 150, 3]])  # out of band, but INVALID: not judged as MAJOR
        self.subscribe()
        alarm = self.wait_for(lambda: self.alarms())[0]
        self.assertEqual(alarm["severity"], "INVALID")
        self.wait_for(lambda: len(self.smtp.messages()) >= 1)
        self.assertEqual(subjects(self.smtp), ["No valid value: Test:M1:Fan has sent none for a while"])
        self.fx.pv(PV, samples=[[self.now - 20, 0, 150, 3], [self.now - 10, 0, 60, 0]])
        ended = self.wait_for(lambda: [a for a in self.alarms(query="?state=all") if a["ended"]])
        self.assertEqual(ended[0]["id"], alarm["id"])
        self.assertEqual([e for e, _ in self.transitions(alarm["id"])], ["opened", "cleared", "ended"])


class LiveView(AlarmTestCase):
    def test_viewers_get_alarms(self):
        self.subscribe()
        got = self.send(150)
        self.assertEqual([(a["pv_string"], a["severity"], a["active"]) for a in got], [(PV, "MAJOR", True)])
        # a new viewer gets the alarms that have not ended right after connecting
        ws = self.viewer()
        messages = [json.loads(ws.recv()) for _ in range(2)]  # the latest value, then the alarm
        self.assertEqual([m["alarm"]["id"] for m in messages if "alarm" in m], [got[0]["id"]])


class Webhook(AlarmTestCase):
    def setUp(self):
        self.hook = WebhookReceiver()
        self.addCleanup(self.hook.stop)
        self.hook.down = True
        self.extra = {"RTP_ALERT_WEBHOOK_URL": self.hook.url, "RTP_ALERT_WEBHOOK_SECRET": SECRET}
        super().setUp()

    def test_down_then_up_delivers_once(self):
        self.subscribe()
        self.send(150)
        self.wait_log("retrying in 1 s")
        self.hook.down = False
        self.wait_for(lambda: self.hook.posts)
        time.sleep(2.5)
        self.assertEqual(len(self.hook.posts), 1)
        headers, body = self.hook.posts[0]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.assertEqual(headers.get("X-Rtp-Signature"), expected)
        message = json.loads(body)
        self.assertEqual((message["event"], message["alarm"]["pv_string"], message["alarm"]["severity"]),
                         ("opened", PV, "MAJOR"))
        self.assertEqual(message["text"], "Threshold breached: Test:M1:Fan is 150 rpm")
        self.assertNotIn("rtp-secret-path", self.s.stderr())  # the URL's secret path is never logged

    def test_a_post_waiting_out_its_back_off_holds_the_later_ones(self):
        """The chat shows the transitions in the order they happened: the escalation, notified while the
        opening's post waits out its back-off, is posted after it, not before."""
        self.hook.down = False
        self.hook.answers = [503, 503]  # the opening's first two attempts: back-off 1 s, then 2 s
        self.subscribe(warning_max=80)
        self.send(90)
        self.wait_log("retrying in 2 s")
        self.send(150)  # escalated during the 2 s
        self.wait_for(lambda: len(self.hook.posts) == 2, seconds=10)
        self.assertEqual(self.hook.events(), ["opened", "escalated"])
        self.assertEqual(len(self.hook.requests), 4)  # two refused, then each once

    def test_a_post_refused_for_good_is_not_retried(self):
        """A 400 answer says the receiver refuses that post's body and would again: it is logged and not
        retried, and the posts after it go on; the database keeps it as refused."""
        self.hook.down = False
        self.hook.answers = [400]
        self.subscribe(warning_max=80)
        self.send(90)
        self.wait_log("the receiver answered 400; not retried")
        self.send(150)
        self.wait_for(lambda: self.hook.posts, seconds=10)
        time.sleep(2.5)  # three outbox ticks: the refused one is not sent again
        self.assertEqual(self.hook.events(), ["escalated"])
        self.assertEqual(self.hook.requested_events(), ["opened", "escalated"])
        rows = self.s.db("SELECT payload, attempts, sent_us, refused_us, last_error FROM alarm_webhooks "
                              "ORDER BY created_us")
        self.assertEqual([(json.loads(r[0])["event"], r[1], r[2] is None, r[3] is None) for r in rows],
                         [("opened", 1, True, False), ("escalated", 1, False, True)])
        self.assertEqual(rows[0][4], "webhook: the receiver answered 400")

    def test_a_post_answered_404_or_429_is_retried(self):
        """A wrong URL (404) or too many requests (429) is not a refusal of the post: it is tried again
        after its back-off, and goes once the receiver takes it."""
        self.hook.down = False
        self.hook.answers = [404, 429]
        self.subscribe()
        self.send(150)
        self.wait_for(lambda: self.hook.posts, seconds=10)
        self.assertEqual(self.hook.events(), ["opened"])
        self.assertIn("the receiver answered 404; retrying in 1 s", self.s.stderr())
        self.assertIn("the receiver answered 429; retrying in 2 s", self.s.stderr())


class DBus(AlarmTestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.addCleanup(self.bus.cleanup)
        self.extra = {"DBUS_SESSION_BUS_ADDRESS": self.bus.address}
        super().setUp()
        self.wait_log("owning the D-Bus name")
        self.env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus.address)

    def ctl(self, *args):
        return subprocess.run([RTPCTL, "--session", *args], env=self.env, capture_output=True, text=True, timeout=60)

    def test_rtpctl_and_signal(self):
        monitor = subprocess.Popen(["gdbus", "monitor", "--session", "--dest", "org.realtimeplot.Server1"],
                                   env=self.env, stdout=subprocess.PIPE, text=True)
        self.addCleanup(monitor.stdout.close)
        self.addCleanup(monitor.wait)
        self.addCleanup(monitor.terminate)
        time.sleep(0.5)
        self.subscribe()
        self.send(150)
        deadline = time.monotonic() + 20
        line = ""
        while "AlarmChanged" not in line and time.monotonic() < deadline:
            line = monitor.stdout.readline()
        self.assertIn("'Test:M1:Fan', 'MAJOR', 'opened')", line)
        r = self.ctl("--json", "alarm", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = json.loads(r.stdout)
        self.assertEqual([(a["pv_string"], a["severity"], a["active"]) for a in listed], [(PV, "MAJOR", True)])
        alarm_id = listed[0]["id"]
        self.assertEqual(self.ctl("alarm", "shelve", alarm_id, "60", "maintenance").returncode, 0)
        self.assertIn("shelved", self.ctl("alarm", "list").stdout)
        self.assertEqual(self.ctl("alarm", "unshelve", alarm_id).returncode, 0)
        r = self.ctl("alarm", "ack", alarm_id, "seen on the console")
        self.assertEqual(r.returncode, 0, r.stderr)
        ack = self.alarms()[0]["acknowledged"]
        self.assertEqual((ack["by"], ack["comment"]), (f"dbus:uid={os.getuid()}", "seen on the console"))
        self.assertEqual(self.ctl("alarm", "shelve", alarm_id, "60", "").returncode, 1)  # a reason is required
        self.assertEqual(self.ctl("alarm", "ack", "no-such-alarm").returncode, 1)
        self.assertEqual(self.ctl("alarm", "list", "bogus").returncode, 1)


class BadWebhookConfig(unittest.TestCase):
    def test_short_secret_is_refused_at_start(self):
        s = Server(env={"RTP_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook", "RTP_ALERT_WEBHOOK_SECRET": "short"})
        self.addCleanup(s.cleanup)
        s.start(expect_ok=False)
        s.proc.wait(timeout=30)
        self.assertNotEqual(s.proc.returncode, 0)
        self.assertIn("RTP_ALERT_WEBHOOK_SECRET", s.stderr())

    def test_secret_without_url_is_refused_at_start(self):
        s = Server(env={"RTP_ALERT_WEBHOOK_SECRET": SECRET})
        self.addCleanup(s.cleanup)
        s.start(expect_ok=False)
        s.proc.wait(timeout=30)
        self.assertNotEqual(s.proc.returncode, 0)
        self.assertIn("RTP_ALERT_WEBHOOK_URL", s.stderr())


if __name__ == "__main__":
    main()
