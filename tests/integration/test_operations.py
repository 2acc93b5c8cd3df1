"""Operating the service (issue "Operate it like a service", second part): GET /metrics parsed with
prometheus_client's own parser, the OpenAPI document against the router, the access log and request ids
in log lines, and readiness without the database."""
import concurrent.futures
import json
import os
import subprocess
import time
import unittest
import urllib.parse

import rtplib
from rtplib import SERVER, ArchiverFixture, Mosquitto, Server, ServerTestCase, on_postgres, shared_postgres

from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "scrape-me-please-0123456789"


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, family, sample_name=None, **labels):
    """The value of the sample of @family with exactly @labels among its labels, or 0 when absent."""
    for s in fams[family].samples if family in fams else []:
        if (sample_name is None or s.name == sample_name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0


class Metrics(ServerTestCase):
    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.server_env = {"ARCHIVER_URL": self.fx.url, "RTP_METRICS_TOKEN": METRICS_TOKEN}
        super().setUp()

    def scrape(self, **kw):
        r = self.s.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, **kw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return families(r.raw)

    def test_who_may_scrape(self):
        r = self.s.request("GET", "/metrics")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json, {"errors": ["Access to the metrics requires an admin's access-token or the metrics token."]})
        r = self.s.request("GET", "/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"})
        self.assertEqual(r.status, 403, r)
        user, token = self.create_user("ada")
        r = self.s.request("GET", "/metrics", token=token)
        self.assertEqual(r.status, 403, r)
        r = self.s.request("GET", "/metrics", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertIn("rtp_build_info", families(r.raw))
        self.scrape()

    def test_counters_move_with_requests(self):
        before = self.scrape()
        for _ in range(3):
            self.assertEqual(self.s.request("GET", "/experiments", token=self.admin).status, 200)
        self.assertEqual(self.s.request("GET", "/experiments/nope", token=self.admin).status, 404)
        self.s.request("POST", "/auth/get_access_token", basic=("admin", "wrong"))
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Fan"})
        self.s.request("POST", "/data/Test", token=self.admin, json_body={"since": "2022-01-15 13:00",
                                                                          "until": "2022-01-15 14:00"})
        after = self.scrape()
        get = dict(route="/experiments", method="GET", code="200")
        self.assertEqual(value(after, "rtp_http_requests", "rtp_http_requests_total", **get)
                         - value(before, "rtp_http_requests", "rtp_http_requests_total", **get), 3)
        self.assertEqual(value(after, "rtp_http_requests", "rtp_http_requests_total", route="/experiments/*",
                               method="GET", code="404"), 1)
        self.assertGreaterEqual(value(after, "rtp_http_request_duration_seconds", "rtp_http_request_duration_seconds_count",
                                      route="/experiments", method="GET"), 3)
        self.assertEqual(value(after, "rtp_logins", "rtp_logins_total", outcome="failure")
                         - value(before, "rtp_logins", "rtp_logins_total", outcome="failure"), 1)
        self.assertGreaterEqual(sum(value(after, "rtp_archiver_requests", "rtp_archiver_requests_total", outcome=o)
                                    for o in ("ok", "not_found")), 1)
        self.assertGreaterEqual(value(after, "rtp_archiver_request_duration_seconds",
                                      "rtp_archiver_request_duration_seconds_count"), 1)
        self.assertEqual(value(after, "rtp_build_info", version="0.1.0"), 1)
        self.assertGreater(value(after, "process_resident_memory_bytes"), 1e6)
        self.assertGreater(value(after, "process_open_fds"), 3)
        self.assertGreater(value(after, "process_start_time_seconds"), time.time() - 600)
        self.assertGreaterEqual(value(after, "rtp_http_requests_in_flight"), 1)  # the scrape itself
        self.assertEqual(value(after, "rtp_mqtt_connected"), 0)
        for name in ["rtp_mqtt_publish", "rtp_alerts", "rtp_live_viewers", "rtp_db_errors", "process_cpu_seconds"]:
            self.assertIn(name, after)

    def test_labels_stay_bounded_under_many_unknown_paths(self):
        def ask(i):
            return self.s.request(["GET", "POST", "BREW"][i % 3], f"/no/such/{i}?token=secret{i}").status

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(ask, range(10000)))
        self.assertEqual(set(statuses) - {404, 501, 405, 400}, set())
        fams = self.scrape()
        series = [s for s in fams["rtp_http_requests"].samples]
        self.assertLess(len(series), 200, len(series))
        self.assertEqual({s.labels["route"] for s in series if s.labels["route"] == "none"}, {"none"})
        self.assertEqual(sum(s.value for s in series if s.labels["route"] == "none"), 10000)
        text = self.s.request("GET", "/metrics", token=self.admin).raw
        self.assertNotIn("/no/such", text)
        self.assertNotIn("secret", text)

    def test_live_viewers_gauge(self):
        import websocket
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Fan"})
        user, token = self.create_user("viewer")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [user["user_id"]]})
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.s.port}/live/Test", subprotocols=["rtp.v1", token],
                                         timeout=10)
        try:
            deadline = time.monotonic() + 10
            while value(self.scrape(), "rtp_live_viewers") != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(value(self.scrape(), "rtp_live_viewers"), 1)
        finally:
            ws.close()
        deadline = time.monotonic() + 10
        while value(self.scrape(), "rtp_live_viewers") != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(value(self.scrape(), "rtp_live_viewers"), 0)


class PublicMetrics(ServerTestCase):
    server_env = {"RTP_METRICS_PUBLIC": "1"}

    def test_anyone_may_scrape(self):
        r = self.s.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertIn("rtp_http_requests_in_flight", families(r.raw))


class MqttMetrics(ServerTestCase):
    def setUp(self):
        self.broker = Mosquitto().start()
        self.addCleanup(self.broker.cleanup)
        self.server_env = {"MQTT_SERVER_URL": f"127.0.0.1:{self.broker.port}", "RTP_METRICS_PUBLIC": "1"}
        super().setUp()

    def test_publishes_and_connection_are_counted(self):
        deadline = time.monotonic() + 30
        while "connected to the MQTT broker" not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.s.request("POST", "/experiments/pvs", token=self.admin,
                       json_body={"pv_string": "Test:M1:Fan", "available_for_mqtt_publish": True})
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": ["0"]})
        r = self.s.request("PUT", "/publish/Test:M1:Fan", token=self.admin, json_body={"value": 3})
        self.assertEqual(r.status, 200, r)
        fams = families(self.s.request("GET", "/metrics").raw)
        self.assertEqual(value(fams, "rtp_mqtt_connected"), 1)
        self.assertGreaterEqual(value(fams, "rtp_mqtt_publish", "rtp_mqtt_publish_total", outcome="published"), 1)


class OpenApi(ServerTestCase):
    def test_the_document_is_served_and_matches_the_routes(self):
        r = self.s.request("GET", "/openapi.json")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, rtplib.openapi_document())
        out = subprocess.run([SERVER, "--list-routes", "--state-dir", os.path.join(self.s.dir, "routes"), "--bus", "none"]
                             + (["--database", shared_postgres().uri(shared_postgres().new_database())]
                                if on_postgres() else []),
                             capture_output=True, text=True, timeout=60, env={**os.environ, "DEFAULT_ADMIN_PASSWORD": "x" * 16})
        self.assertEqual(out.returncode, 0, out.stderr)
        registered = {tuple(line.split(" ", 1)) for line in out.stdout.splitlines() if line[:1].isupper()}
        self.assertGreater(len(registered), 40)
        documented = set()
        for path, item in r.json["paths"].items():
            pattern = "/".join("*" if seg.startswith("{") else seg for seg in path.split("/"))
            for method, operation in item.items():
                if method == "parameters" or operation.get("x-websocket"):
                    continue  # /live is a WebSocket upgrade, not a route of the router
                documented.add((method.upper(), pattern))
        self.assertEqual(registered - documented, set(), "routes missing from data/openapi.json")
        self.assertEqual(documented - registered, set(), "paths in data/openapi.json the server does not have")

    def test_answers_are_checked_against_the_document(self):
        # the hook in rtplib raises for an answer that does not match: prove it can fail
        bad = rtplib.Response(200, [("Content-Type", "application/json")], '{"users": [{"user_id": 7}]}')
        with self.assertRaises(rtplib.ContractError):
            rtplib.check_contract("GET", "/auth/users", bad)
        bad = rtplib.Response(404, [("Content-Type", "application/json")], '{"error": "x"}')
        with self.assertRaises(rtplib.ContractError):
            rtplib.check_contract("GET", "/no/such/thing", bad)
        good = self.s.request("GET", "/auth/users", token=self.admin)
        rtplib.check_contract("GET", "/auth/users", good)


class AccessLog(ServerTestCase):
    server_env = {"RTP_ACCESS_LOG": "1"}

    def test_one_line_per_request_without_secrets(self):
        self.s.request("GET", "/experiments?token=sekret-in-query", token=self.admin, headers={"X-Request-Id": "acc-1"})
        self.s.request("POST", "/auth/get_access_token", basic=("admin", "wrong-password"),
                       headers={"X-Request-Id": "acc-2"})
        self.s.request("PUT", "/auth/users/current", token=self.admin, body="x" * (2 << 20),
                       headers={"X-Request-Id": "acc-3", "Content-Type": "application/json"})
        deadline = time.monotonic() + 10
        while "id=acc-3" not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = self.s.stderr()
        lines = [l for l in log.splitlines() if "id=acc-" in l]
        self.assertTrue(any("GET /experiments 200" in l and "user=0" in l and "id=acc-1" in l for l in lines), lines)
        self.assertTrue(any("POST /auth/get_access_token 403" in l and "user=-" in l for l in lines), lines)
        # refused before the body was read: logged too, with its id (which the answer carried)
        self.assertTrue(any("PUT /auth/users/* 413" in l and "id=acc-3" in l for l in lines), lines)
        self.assertNotIn("sekret", log)
        self.assertNotIn("wrong-password", log)
        self.assertNotIn(self.admin, log)

    def test_early_refusals_carry_the_request_id(self):
        r = self.s.request("PUT", "/auth/users/current", token=self.admin, body="x" * (2 << 20),
                           headers={"X-Request-Id": "big-1", "Content-Type": "application/json"})
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.header("X-Request-Id"), "big-1")


class RequestIdsInLogLines(ServerTestCase):
    def test_a_warning_about_a_request_names_it(self):
        # a login of a name the lockout counts: its log line is written while the request is current
        for _ in range(10):
            self.s.request("POST", "/auth/get_access_token", basic=("admin", "nope"), headers={"X-Request-Id": "lk-9"})
        r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Bad+Name:X"},
                           headers={"X-Request-Id": "warn-1"})
        deadline = time.monotonic() + 5
        while "[request " not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        tagged = [l for l in self.s.stderr().splitlines() if "[request " in l]
        self.assertTrue(tagged, self.s.stderr()[-2000:])
        self.assertTrue(all(l.rstrip().endswith("]") for l in tagged), tagged)


@unittest.skipUnless(on_postgres(), "stops the PostgreSQL server")
class ReadyWithoutDatabase(ServerTestCase):
    def test_postgres_stopped_means_503(self):
        self.assertEqual(self.s.request("GET", "/ready").status, 200)
        pg = shared_postgres()
        pg.stop()
        try:
            time.sleep(5.2)  # past the kept probe
            r = self.s.request("GET", "/ready")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json["status"], "unavailable")
            self.assertEqual(r.json["checks"]["database"], "error: not available")
            self.assertEqual(self.s.request("GET", "/health").status, 200)  # liveness: the process is fine
        finally:
            pg.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.s.request("GET", "/ready")
            if r.status == 200:
                break
            time.sleep(1)
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    rtplib.main()
