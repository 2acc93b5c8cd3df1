"""The in-process threshold monitor: values from the archiver (fixture) or MQTT topics, mail by
real SMTP (aiosmtpd), episodes that survive restarts."""
import datetime
import email.header
import email.utils
import json
import time
import unittest

import os
import subprocess

from rtplib import ArchiverFixture, Mosquitto, PrivateBus, Server, ServerTestCase, SmtpReceiver, Subscriber, main, reserve_port

PV = "Test:M1:Fan"


def subject(msg):
    return str(email.header.make_header(email.header.decode_header(msg["Subject"])))


class MonitorTestCase(ServerTestCase):
    extra = {}
    with_archiver = True

    def setUp(self):
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.smtp = SmtpReceiver().start()
        self.addCleanup(self.smtp.cleanup)
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}", "RTP_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}",
                           "RTP_SMTP_FROM": "alerts@lab.example.org", "RTP_MONITOR_INTERVAL": "0.2", "THRESHOLD_UNIT": "rpm",
                           "ARCHIVER_TIMEZONE": "Europe/Berlin",
                           # these tests are about the bands; silence (INVALID) is tested in test_alarms
                           "RTP_ALARM_SILENCE_INTERVALS": "0"}
        if self.with_archiver:
            self.server_env["ARCHIVER_URL"] = self.fx.url
        self.server_env.update(self.extra)
        super().setUp()
        self.wait_log("connected to the MQTT broker")
        self.samples = []
        self.set_value(50, wait=False)  # nothing polls before the subscription exists
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
            "pv_string": PV, "human_readable_name": "Fan 1", "default_threshold_min": 0, "default_threshold_max": 100})
        self.user, self.token = self.create_user("ulla", email="ulla@lab.example.org")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        r = self.s.request("POST", f"/email/subscribe/{PV}", token=self.token)
        self.assertEqual(r.status, 200, r)

    def wait_log(self, text, seconds=30):
        deadline = time.monotonic() + seconds
        while text not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(text, self.s.stderr())

    def set_value(self, value, wait=True):
        """A new latest sample (never in the future, always later than the last one);
        returns after the monitor has polled twice since."""
        secs, nanos = int(time.time()), 0
        if self.samples and self.samples[-1][0] >= secs:
            secs, nanos = self.samples[-1][0], self.samples[-1][1] + 1000
        self.samples.append([secs, nanos, value])
        self.fx.pv(PV, samples=self.samples)
        if wait:
            self.wait_polls(2)

    def wait_polls(self, n):
        start = len(self.fx.requests())
        deadline = time.monotonic() + 30
        while len(self.fx.requests()) < start + n and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_mails(self, n, seconds=30):
        deadline = time.monotonic() + seconds
        while len(self.smtp.messages()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.smtp.messages()


class Episodes(MonitorTestCase):
    def test_in_out_out_in_out_gives_two_mails(self):
        for v in [150, 160, 60, 200]:
            self.set_value(v)
        mails = self.wait_mails(2)
        self.wait_polls(5)
        mails = self.smtp.messages()
        self.assertEqual(len(mails), 2, [subject(m) for m in mails])
        for m in mails:
            self.assertEqual(m["To"], "<ulla@lab.example.org>")
            self.assertEqual(m["From"], "<alerts@lab.example.org>")
        self.assertEqual(sorted(subject(m) for m in mails),
                         ["Threshold breached: Test:M1:Fan is 150 rpm", "Threshold breached: Test:M1:Fan is 200 rpm"])
        body = mails[0].get_payload(decode=True).decode()
        self.assertIn("Hello Ulla Tester,", body)
        self.assertIn("Test:M1:Fan (Fan 1)", body)
        self.assertIn("Your band is from 0 to 100 rpm.", body)
        alerts = self.s.request("GET", "/email/alerts", token=self.token).json["alerts"]
        self.assertEqual([(a["breach_value"], a["closed"] is None) for a in alerts], [("200", True), ("150", False)])
        self.assertTrue(all(a["mails"][0]["sent"] for a in alerts))
        _, other = self.create_user("otto")
        self.assertEqual(self.s.request("GET", "/email/alerts", token=other).json, {"alerts": []})
        self.assertEqual(len(self.s.request("GET", "/email/alerts", token=self.admin).json["alerts"]), 2)

        # a restart in the middle of the open episode sends nothing again
        self.s.stop()
        self.s.start()
        self.set_value(210)
        self.wait_polls(5)
        self.assertEqual(len(self.smtp.messages()), 2)

    def test_german_subscriber(self):
        self.s.request("PUT", "/auth/users/current", token=self.token, json_body={"preferred_language": "de"})
        self.set_value(150)
        mails = self.wait_mails(1)
        self.assertEqual(subject(mails[0]), "Grenzwert überschritten: Test:M1:Fan ist 150 rpm")
        self.assertIn("Ihr Bereich reicht von 0 bis 100 rpm.", mails[0].get_payload(decode=True).decode())


class Starvation(MonitorTestCase):
    """Sixteen clients that stop reading streamed answers held every archiver connection (paused
    transfers are exempt from curl's stall limit): other /data requests and the monitor's polls
    waited for ever."""
    extra = {"RTP_CLIENT_TIMEOUT": "2", "RTP_ARCHIVER_TIMEOUT": "30"}

    def test_non_reading_clients_starve_nobody(self):
        import socket
        self.fx.pv("Test:Big:Ramp", start=int(time.time()) - 400000, period=1, count=400000)
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        body = json.dumps({"max_points": 0, "since": "2000-01-01T00:00:00Z"}).encode()
        sockets = []
        for _ in range(16):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(("127.0.0.1", self.s.port))
            c.sendall(b"POST /data/Test/Test:Big:Ramp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"x-access-tokens: " + self.token.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                      b"\r\n\r\n" + body)
            sockets.append(c)
            self.addCleanup(c.close)
        deadline = time.monotonic() + 30
        while sum("Big%3ARamp" in q for q in self.fx.requests()) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        # another user's chart and the monitor's alert go on
        r = self.s.request("POST", f"/data/Test/{PV}", token=self.token, json_body={})
        self.assertEqual(r.status, 200, r)
        self.set_value(150)
        mails = self.wait_mails(1)
        self.assertEqual([subject(m) for m in mails], ["Threshold breached: Test:M1:Fan is 150 rpm"])
        self.wait_log("it took nothing of its streamed answer")


class Reminders(MonitorTestCase):
    extra = {"RTP_ALERT_RENOTIFY_S": "1", "RTP_ALERT_HYSTERESIS": "5"}

    def test_reminder_and_hysteresis(self):
        self.set_value(150)
        self.wait_mails(1)
        time.sleep(1.2)
        self.set_value(151)  # still out, a second later: a reminder
        mails = self.wait_mails(2)
        self.assertEqual(sorted(subject(m) for m in mails)[0], "Reminder: Test:M1:Fan is still out of its band: 151 rpm")
        self.set_value(98)   # inside, but within the hysteresis: the episode stays open
        self.set_value(150)  # no new episode
        alerts = self.s.request("GET", "/email/alerts", token=self.token).json["alerts"]
        self.assertEqual(len(alerts), 1)
        self.set_value(50)   # well inside: closed
        alerts = self.s.request("GET", "/email/alerts", token=self.token).json["alerts"]
        self.assertIsNotNone(alerts[0]["closed"])


class SmtpOutage(MonitorTestCase):
    def setUp(self):
        self.reserved = reserve_port()  # nothing answers there, and nobody else takes the port meanwhile
        self.addCleanup(self.reserved.close)
        self.down_port = self.reserved.getsockname()[1]
        self.extra = {"RTP_SMTP_URL": f"smtp://127.0.0.1:{self.down_port}"}
        super().setUp()

    def test_mail_is_retried_until_delivered(self):
        self.set_value(150)
        deadline = time.monotonic() + 30
        attempts = 0
        while attempts < 2 and time.monotonic() < deadline:
            alerts = self.s.request("GET", "/email/alerts", token=self.token).json["alerts"]
            attempts = alerts[0]["mails"][0]["attempts"] if alerts else 0
            time.sleep(0.2)
        self.assertGreaterEqual(attempts, 2)
        self.assertFalse(alerts[0]["mails"][0]["sent"])
        late = SmtpReceiver(port=self.down_port).start()
        self.addCleanup(late.cleanup)
        self.reserved.close()
        deadline = time.monotonic() + 60
        while not late.messages() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(len(late.messages()), 1)
        mail = late.messages()[0]
        self.assertEqual(subject(mail), "Threshold breached: Test:M1:Fan is 150 rpm")
        # dated when the alarm wrote it, not when the third attempt got through (3 s later at least), so
        # that it sorts among the others by its alarm's time; its Message-ID is the outbox row's
        opened = datetime.datetime.fromisoformat(alerts[0]["opened"])
        dated = email.utils.parsedate_to_datetime(mail["Date"])
        self.assertLess(abs((dated - opened).total_seconds()), 1.5, (mail["Date"], alerts[0]["opened"]))
        (row_id,), = self.s.db("SELECT id FROM alert_mails")
        self.assertEqual(mail["Message-ID"], f"<{row_id}@realtimeplot>")


class SmtpCredentialsNeedTls(MonitorTestCase):
    """The receiver offers no STARTTLS: credentials must not go out in clear text (they did with
    CURLUSESSL_TRY); the mail stays queued with the reason."""
    extra = {"RTP_SMTP_USER": "alerts", "RTP_SMTP_PASSWORD": "smtp secret"}

    def test_no_mail_without_tls(self):
        self.assertIn("STARTTLS is required", self.s.stderr())
        self.set_value(150)
        deadline = time.monotonic() + 30
        mail = {}
        while not mail.get("last_error") and time.monotonic() < deadline:
            alerts = self.s.request("GET", "/email/alerts", token=self.token).json["alerts"]
            mail = alerts[0]["mails"][0] if alerts and alerts[0]["mails"] else {}
            time.sleep(0.2)
        self.assertFalse(mail["sent"], mail)
        self.assertRegex(mail["last_error"], "(?i)ssl|tls")
        self.assertEqual(self.smtp.messages(), [])
        self.assertNotIn("smtp secret", self.s.stderr())


class SmtpInsecureAllowed(MonitorTestCase):
    extra = {"RTP_SMTP_USER": "alerts", "RTP_SMTP_PASSWORD": "smtp secret", "RTP_SMTP_INSECURE": "1"}

    def test_plain_text_only_when_allowed(self):
        self.assertIn("RTP_SMTP_INSECURE=1", self.s.stderr())
        self.set_value(150)
        self.assertEqual(len(self.wait_mails(1)), 1)


class DBusSignal(MonitorTestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.addCleanup(self.bus.cleanup)
        self.extra = {"DBUS_SESSION_BUS_ADDRESS": self.bus.address}
        super().setUp()

    def test_threshold_breached_is_signalled(self):
        self.wait_log("owning the D-Bus name")
        monitor = subprocess.Popen(["gdbus", "monitor", "--session", "--dest", "org.realtimeplot.Server1"],
                                   env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus.address),
                                   stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            self.set_value(150)
            deadline = time.monotonic() + 20
            line = ""
            while "ThresholdBreached" not in line and time.monotonic() < deadline:
                line = monitor.stdout.readline()
            self.assertIn("org.realtimeplot.Server1.ThresholdBreached ('Test:M1:Fan', 150.0, int64 0, int64 100)", line)
        finally:
            monitor.terminate()
            monitor.wait()
            monitor.stdout.close()


class MqttValues(MonitorTestCase):
    with_archiver = False
    extra = {"RTP_MQTT_VALUE_TOPIC_PREFIX": "lab/values",
             "SECRET_KEY": "a shared signing key of more than 32 bytes for both"}

    def test_values_from_topics(self):
        import paho.mqtt.publish as publish
        self.wait_log("reading values from MQTT topics lab/values/#")
        self.wait_log("connected to the MQTT broker")
        time.sleep(0.5)  # its subscription reaches the broker
        for value in ["50", "150", "155"]:
            publish.single("lab/values/Test/M1/Fan", value, qos=1, hostname="127.0.0.1", port=self.broker.port)
        mails = self.wait_mails(1)
        time.sleep(1)
        self.assertEqual([subject(m) for m in self.smtp.messages()], ["Threshold breached: Test:M1:Fan is 150 rpm"])

    def publish(self, *values, pv="Test/M1/Fan"):
        import paho.mqtt.publish as publish
        publish.multiple([{"topic": f"lab/values/{pv}", "payload": str(v), "qos": 1} for v in values],
                         hostname="127.0.0.1", port=self.broker.port)

    def wait_received(self, total):
        deadline = time.monotonic() + 10
        while sum(self.mqtt_received(o) for o in ("queued", "settled", "dropped")) < total and time.monotonic() < deadline:
            time.sleep(0.05)

    def judged_in_band(self):
        """One in-band value through the main loop: the alerter finds nothing to do and says so."""
        self.wait_log("connected to the MQTT broker")
        time.sleep(0.5)  # its subscription reaches the broker
        self.publish(50)
        self.wait_received(1)
        time.sleep(0.2)  # judged on the main loop

    def test_received_values_are_counted(self):
        self.wait_log("connected to the MQTT broker")
        time.sleep(0.5)  # its subscription reaches the broker
        self.assertEqual(self.mqtt_received("queued"), 0)
        self.judged_in_band()
        self.assertEqual(self.mqtt_received("queued"), 1)
        # in band: settled on arrival; an unknown PV, a text and an out-of-band value go to the main loop
        self.publish(*range(20, 39))
        self.publish(1, pv="No/Such/Pv")
        self.publish("no", 150)
        self.wait_received(23)
        self.assertEqual((self.mqtt_received("queued"), self.mqtt_received("settled"), self.mqtt_received("dropped")), (4, 19, 0))
        self.assertEqual([subject(m) for m in self.wait_mails(1)], ["Threshold breached: Test:M1:Fan is 150 rpm"])

    def test_a_band_changed_here_judges_the_next_value(self):
        self.judged_in_band()
        self.publish(45)
        self.wait_received(2)
        self.assertEqual(self.mqtt_received("settled"), 1)
        r = self.s.request("PUT", f"/alarms/subscriptions/{PV}", token=self.token, json_body={"warning_max": 40})
        self.assertEqual(r.status, 200, r)
        self.publish(45)  # the same value: inside the old band, outside the new one
        self.assertEqual([subject(m) for m in self.wait_mails(1)], ["Warning (MINOR): Test:M1:Fan is 45 rpm"])
        self.assertEqual(self.mqtt_received("settled"), 1)

    def test_a_band_changed_on_another_instance_judges_the_next_value(self):
        # the other one reads no values; of the two, one sends the mail (test_alarms OneSender)
        env = dict(self.server_env, RTP_MQTT_VALUE_TOPIC_PREFIX="")
        b = Server(env=env, args=["--database", self.s.database_uri()])
        self.addCleanup(b.cleanup)
        b.start()
        self.judged_in_band()
        said = self.s.stderr().count("the bands may have changed")
        r = b.request("PUT", f"/alarms/subscriptions/{PV}", token=self.token, json_body={"warning_max": 40})
        self.assertEqual(r.status, 200, r)
        # learnt of without any request to this instance (it looks every 0.1 s)
        deadline = time.monotonic() + 10
        while self.s.stderr().count("the bands may have changed") == said and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(self.s.stderr().count("the bands may have changed"), said, self.s.stderr()[-4000:])
        self.publish(45)
        self.assertEqual([subject(m) for m in self.wait_mails(1)], ["Warning (MINOR): Test:M1:Fan is 45 rpm"])
        self.assertEqual(self.mqtt_received("settled"), 0)

    def test_an_alarm_elsewhere_leaves_quiet_pvs_settled(self):
        """An alarmed PV's alarm is written while its values come; that is no change of any band, so
        the values of the other, quiet PVs are still settled on arrival."""
        pump = "Test:M1:Pump"
        r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={
            "pv_string": pump, "default_threshold_min": 0, "default_threshold_max": 100})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.s.request("POST", f"/email/subscribe/{pump}", token=self.token).status, 200)
        self.judged_in_band()
        self.publish(50, pv="Test/M1/Pump")
        self.wait_received(2)
        time.sleep(0.2)  # judged on the main loop
        self.publish(150)
        self.assertEqual(len(self.wait_mails(1)), 1)  # the Fan's alarm is open
        self.publish(151)  # leaves the alarm as it was: judged, then its like are settled for a while
        self.wait_received(4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                self.s.request("GET", "/alarms", token=self.token).json["alarms"][0]["value"] != "151":
            time.sleep(0.05)
        settled = self.mqtt_received("settled")
        import paho.mqtt.publish as publish
        msgs = []
        for i in range(9):
            msgs.append({"topic": "lab/values/Test/M1/Fan", "payload": str(152 + i), "qos": 1})
        for i in range(10):
            msgs.append({"topic": "lab/values/Test/M1/Pump", "payload": str(51 + i), "qos": 1})
        publish.multiple(msgs, hostname="127.0.0.1", port=self.broker.port)
        self.wait_received(23)
        # every Pump value; and the Fan's after its first, which leave its alarm as it was (settled for
        # a second at most at a time: a range around the alarm's level)
        self.assertEqual(self.mqtt_received("settled") - settled, 19)
        self.assertEqual(self.mqtt_received("queued"), 4)  # the first two, the opening one, the Fan's first
        alarm = self.s.request("GET", "/alarms", token=self.token).json["alarms"][0]
        self.assertEqual((alarm["pv_string"], alarm["value"]), (PV, "160"))

    def test_a_new_viewer_gets_the_latest_settled_value(self):
        import websocket
        self.judged_in_band()
        self.publish(60, 61.5)
        self.wait_received(3)
        self.assertEqual(self.mqtt_received("settled"), 2)
        ws = websocket.create_connection(self.s.url.replace("http://", "ws://") + "live/Test",
                                         subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(ws.close)
        first = json.loads(ws.recv())
        self.assertEqual((first["pv"], first["data"]), (PV, 61.5))
        # watched now: every value reaches the viewer, none is settled
        self.publish(62)
        self.assertEqual(json.loads(ws.recv())["data"], 62)
        self.assertEqual(self.mqtt_received("settled"), 2)

    def test_only_known_pvs_are_kept(self):
        import paho.mqtt.publish as publish
        import websocket
        self.wait_log("reading values from MQTT topics lab/values/#")
        self.wait_log("connected to the MQTT broker")
        time.sleep(0.5)  # its subscription reaches the broker
        live = self.s.url.replace("http://", "ws://") + "live/Test"
        before = websocket.create_connection(live, subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(before.close)
        # qos 1: each publish is acknowledged by the broker before the next, and the server reads them
        # in that order, so the Fan value seen below means that the Ghost value was handled before it
        publish.single("lab/values/Test/M1/Ghost", "7", qos=1, hostname="127.0.0.1", port=self.broker.port)
        publish.single("lab/values/Test/M1/Fan", "8", qos=1, hostname="127.0.0.1", port=self.broker.port)
        first = json.loads(before.recv())
        self.assertEqual((first["pv"], first["data"]), ("Test:M1:Fan", 8))
        # created afterwards: nothing was kept for it while it did not exist
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Ghost"})
        ws = websocket.create_connection(self.s.url.replace("http://", "ws://") + "live/Test",
                                         subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(ws.close)
        first = json.loads(ws.recv())
        self.assertEqual((first["pv"], first["data"]), ("Test:M1:Fan", 8))
        ws.settimeout(1)
        with self.assertRaises(websocket.WebSocketTimeoutException):
            ws.recv()  # no value of Test:M1:Ghost


if __name__ == "__main__":
    main()
