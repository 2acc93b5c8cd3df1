"""GET /health and GET /ready (issue "Operate it like a service", first part)."""
import concurrent.futures
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from rtplib import SERVER, ArchiverFixture, Mosquitto, Server, ServerTestCase, free_port, main


class Health(ServerTestCase):
    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.smtp_port = free_port()  # nothing listens there
        url = urllib.parse.urlsplit(self.fx.url)
        self.server_env = {"ARCHIVER_URL": f"http://archiveuser:s3cret-pass@{url.netloc}",
                           "MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}",
                           "RTP_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}", "RTP_SMTP_FROM": "rtp@lab.example.org"}
        super().setUp()
        deadline = time.monotonic() + 30
        while "connected to the MQTT broker" not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)

    def test_liveness_needs_nothing(self):
        r = self.s.request("GET", "/health")
        self.assertEqual((r.status, r.json), (200, {"status": "ok", "version": "0.1.0"}))

    def test_readiness(self):
        r = self.s.request("GET", "/ready")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"status": "degraded", "checks": {
            "database": "ok", "archiver": "ok", "mqtt": "ok", "smtp": "error: not reachable",
            "directory": "unconfigured"}})
        self.assertNotIn("127.0.0.1", r.raw)  # no host, no credentials: the configuration decides what is public
        self.assertNotIn("s3cret", r.raw)
        # the broker goes: degraded, still 200 (single features are gone, not the service)
        self.broker.stop()
        self.fx.stop()
        time.sleep(5.2)  # the probes of the last 5 s are reused
        deadline = time.monotonic() + 30
        while True:
            r = self.s.request("GET", "/ready")
            if r.json["checks"]["mqtt"] != "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["status"], r.json["checks"]["mqtt"], r.json["checks"]["archiver"]),
                         ("degraded", "error: not connected", "error: not reachable"))
        self.assertNotIn("s3cret", self.s.stderr()[-3000:] + r.raw)

    def test_probes_are_shared_and_rate_limited(self):
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: self.s.request("GET", "/ready"), range(100)))
        self.assertEqual({a.status for a in answers}, {200})
        probes = [q for q in self.fx.requests() if "getVersion" in q]
        self.assertLessEqual(len(probes), 2, probes)  # one per 5 s, whatever the callers (2: a boundary)


class RequestIds(ServerTestCase):
    def test_sane_ids_are_echoed_others_replaced(self):
        import re
        r = self.s.request("GET", "/health", headers={"X-Request-Id": "lb-42.a_b"})
        self.assertEqual(r.header("X-Request-Id"), "lb-42.a_b")
        r = self.s.request("GET", "/auth/users/current", headers={"X-Request-Id": "trace-7"})
        self.assertEqual((r.status, r.header("X-Request-Id")), (401, "trace-7"))  # errors carry it too
        seen = set()
        for bad in ["x" * 65, "a b", "<script>", "ä", ""]:
            r = self.s.request("GET", "/health", headers={"X-Request-Id": bad})
            rid = r.header("X-Request-Id")
            self.assertRegex(rid, r"^[0-9a-f]{16}$", bad)
            seen.add(rid)
        r = self.s.request("GET", "/health")
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{16}$")
        self.assertEqual(len(seen), 5)  # made fresh for each request


class Systemd(unittest.TestCase):
    """Type=notify and the watchdog, with a NOTIFY_SOCKET the test reads (no systemd needed)."""

    def notify_socket(self):
        d = tempfile.mkdtemp(prefix="rtp-notify-")
        self.addCleanup(shutil.rmtree, d, True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(os.path.join(d, "notify"))
        sock.settimeout(10)
        self.addCleanup(sock.close)
        return sock

    def messages(self, sock, until, seconds=10):
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                break
            if until(got):
                break
        return got

    def test_ready_watchdog_stopping(self):
        sock = self.notify_socket()
        s = Server(env={"NOTIFY_SOCKET": sock.getsockname(), "WATCHDOG_USEC": "200000"})
        self.addCleanup(s.cleanup)
        s.start()
        got = self.messages(sock, lambda g: sum(m == "WATCHDOG=1" for m in g) >= 3)
        self.assertTrue(got[0].startswith("READY=1\nSTATUS=Listening on http://127.0.0.1:"), got)
        self.assertGreaterEqual(sum(m == "WATCHDOG=1" for m in got), 3, got)  # every 0.1 s from the main loop
        s.stop()
        got = self.messages(sock, lambda g: any(m.startswith("STOPPING=1") for m in g), 5)
        self.assertTrue(any(m.startswith("STOPPING=1") for m in got), got)

    def test_a_watchdog_meant_for_another_process_is_not_fed(self):
        sock = self.notify_socket()
        s = Server(env={"NOTIFY_SOCKET": sock.getsockname(), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
        self.addCleanup(s.cleanup)
        s.start()
        got = self.messages(sock, lambda g: False, 1.0)
        self.assertTrue(got and got[0].startswith("READY=1"), got)
        self.assertNotIn("WATCHDOG=1", got)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_the_unit_verifies(self):
        unit = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(SERVER))), "data",
                            "realtimeplot-server.service")
        with open(unit) as f:
            text = f.read()
        self.assertIn("Type=notify", text)
        self.assertIn("WatchdogSec=", text)
        bindir = os.path.dirname(os.path.abspath(SERVER))
        d = tempfile.mkdtemp(prefix="rtp-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        local = os.path.join(d, "realtimeplot-server.service")
        with open(local, "w") as f:  # the programs as built here, not yet installed
            f.write("\n".join(f"ExecStart={bindir}/realtimeplot-server " + l.split(" ", 1)[1]
                              if l.startswith("ExecStart=") else
                              f"ExecReload={bindir}/rtpctl " + l.split(" ", 1)[1] if l.startswith("ExecReload=") else l
                              for l in text.splitlines()))
        r = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)


class Unconfigured(ServerTestCase):
    def test_a_bare_server_is_ready(self):
        r = self.s.request("GET", "/ready")
        self.assertEqual((r.status, r.json["status"]), (200, "ok"))
        self.assertEqual(r.json["checks"], {"database": "ok", "archiver": "unconfigured", "mqtt": "unconfigured",
                                            "smtp": "unconfigured", "directory": "unconfigured"})


if __name__ == "__main__":
    main()
