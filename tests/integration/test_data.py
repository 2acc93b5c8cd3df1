"""Integration tests of /data and validate_pv_string against the archiver fixture."""
import json
import threading
import time
import urllib.parse
from datetime import datetime, timezone

from rtplib import ArchiverFixture, ServerTestCase, main, free_port

NOT_ASSIGNED = "Only users that are assigned to the experiment and admins can access it."
ARCHIVER_DOWN = "Could not get process variable data from archiver."


def ts(y, mo, d, h, mi, s=0):
    return int(datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp())


class DataTestCase(ServerTestCase):
    extra_env = {}

    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.server_env = {"ARCHIVER_URL": self.fx.url, "ARCHIVER_TIMEZONE": "Europe/Berlin",
                           "RTP_ARCHIVER_TIMEOUT": "1", "DEFAULT_ARCHIVER_TIME_PERIOD": "3", **self.extra_env}
        super().setUp()
        t0 = ts(2022, 1, 15, 12, 37, 34)
        # three fraction forms, and one sample before the window
        self.fx.pv("Test:M1:Fan", samples=[[t0 - 100, 0, 9.5], [t0, 0, 0.0], [t0 + 1, 793888000, 1.25],
                                           [t0 + 2, 793888256, -2], [t0 + 3600, 0, 99]])
        self.fx.pv("Test:M1:Str", samples=[[t0 + 1, 0, "on"]])
        self.fx.pv("Test:Big:Ramp", start=ts(2022, 1, 1, 0, 0), period=1, count=400000)
        for pv in ["Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"]:
            self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": pv})
        self.user, self.token = self.create_user("dora")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        self.window = {"since": "2022-01-15 13:37:34", "until": "2022-01-15 13:37:40"}

    def data(self, path="/data/Test", body=None, token=None):
        return self.s.request("POST", path, token=token or self.token, json_body=body if body is not None else self.window)


class Data(DataTestCase):
    def test_points_in_the_archiver_time_zone(self):
        r = self.data()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["data"]["experiment"], {"short_id": "Test", "human_readable_name": None, "process_variable_urls": [
            "/experiments/pvs/Test:M1:Fan", "/experiments/pvs/Test:M1:Str", "/experiments/pvs/Test:M1:Unknown"]})
        self.assertEqual(r.json["data"]["process_variables_data"], {
            "Test:M1:Fan": [{"time": "2022-01-15 13:35:54+01:00", "data": 9.5},  # the last one before the window is kept
                            {"time": "2022-01-15 13:37:34+01:00", "data": 0.0},
                            {"time": "2022-01-15 13:37:35.793888+01:00", "data": 1.25},
                            {"time": "2022-01-15 13:37:36.793888256+01:00", "data": -2}],
            "Test:M1:Str": [{"time": "2022-01-15 13:37:35+01:00", "data": "on"}],
            "Test:M1:Unknown": []})  # Deviation: an unknown PV is [], not a 502
        self.assertEqual(r.json["warnings"], [])
        # one request for the experiment, the window in UTC
        reqs = self.fx.requests()
        self.assertEqual(len(reqs), 1, reqs)
        self.assertEqual(urllib.parse.urlsplit(reqs[0]).path, "/retrieval/data/getDataForPVs.json")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(reqs[0]).query)
        self.assertEqual(q["from"], ["2022-01-15T12:37:34.000Z"])
        self.assertEqual(q["to"], ["2022-01-15T12:37:40.000Z"])
        self.assertEqual(q["pv"], ["optimized_5000(Test:M1:Fan)", "optimized_5000(Test:M1:Str)",
                                   "optimized_5000(Test:M1:Unknown)"])
        # an appliance without getDataForPVs.json: the same answer from one getData.json per PV
        self.fx.missing("/retrieval/data/getDataForPVs.json")
        again = self.data()
        self.assertEqual(again.json, r.json)
        reqs = self.fx.requests()[1:]
        self.assertEqual(sorted(urllib.parse.parse_qs(urllib.parse.urlsplit(q).query)["pv"][0] for q in reqs
                                if "getData.json" in q),
                         ["optimized_5000(Test:M1:Fan)", "optimized_5000(Test:M1:Str)", "optimized_5000(Test:M1:Unknown)"])

    def test_iso_input_and_single_pv(self):
        r = self.data("/data/Test/Test:M1:Str", {"since": "2022-01-15T12:37:34Z", "until": "2022-01-15T13:37:40+01:00"})
        self.assertEqual(r.json["data"]["process_variables_data"], {"Test:M1:Str": [{"time": "2022-01-15 13:37:35+01:00", "data": "on"}]})
        self.assertError(self.data("/data/Test/Other:PV"), 404, "The process variable (Other:PV) is not present in the database.")
        self.assertError(self.data("/data/Nope"), 404, "The experiment (Nope) is not present in the database.")

    def test_access(self):
        _, stranger = self.create_user("stan")
        self.assertError(self.data(token=stranger), 403, NOT_ASSIGNED)
        self.assertError(self.data("/data/Test/Test:M1:Fan", token=stranger), 403, NOT_ASSIGNED)
        self.assertEqual(self.data(token=self.admin).status, 200)  # Deviation: admins too
        self.assertEqual(self.s.request("POST", "/data/Test").status, 401)

    def test_default_window(self):
        before = time.time()
        r = self.data(body={})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["warnings"], ["Time frame not specified. The data is in a server-defined time frame of 3 hours up to the current time."])
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.fx.requests()[-1]).query)
        t_from = datetime.fromisoformat(q["from"][0].replace("Z", "+00:00")).timestamp()
        t_to = datetime.fromisoformat(q["to"][0].replace("Z", "+00:00")).timestamp()
        self.assertAlmostEqual(t_to - t_from, 3 * 3600, delta=1)
        self.assertTrue(before - 5 <= t_to <= time.time() + 5)
        # no body at all, and a null since, behave the same
        self.assertEqual(self.s.request("POST", "/data/Test", token=self.token).json["warnings"], r.json["warnings"])
        self.assertEqual(self.data(body={"since": None}).json["warnings"], r.json["warnings"])

    def test_bad_input(self):
        self.assertError(self.data(body={"since": "yesterday"}), 400,
                         "since: The time (yesterday) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.")
        self.assertError(self.data(body={"since": "2022-01-15 10:00", "until": "2022-02-30 10:00"}), 400,
                         "until: The time (2022-02-30 10:00) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.")
        self.assertError(self.data(body={"since": "2022-01-15 10:00", "until": "2022-01-15 09:00"}), 400,
                         "The time frame is empty: since is after until.")
        for bad in [-1, 1.5, "10", True]:
            self.assertError(self.data(body={"since": "2022-01-15 10:00", "max_points": bad}), 400,
                             "max_points: Value must be a non-negative integer.")
        self.assertError(self.s.request("POST", "/data/Test", token=self.token, body="[1]"), 400,
                         "You must provide the data in the body as JSON.")
        self.assertEqual(self.fx.requests(), [])  # nothing reached the archiver

    def test_daylight_saving(self):
        t = ts(2022, 10, 30, 0, 30)
        self.fx.pv("Test:M1:Fan", samples=[[t, 0, 1], [t + 3600, 0, 2], [t + 7200, 0, 3]])
        r = self.data("/data/Test/Test:M1:Fan", {"since": "2022-10-30 02:30:00", "until": "2022-10-30 04:00"})
        self.assertEqual([p["time"] for p in r.json["data"]["process_variables_data"]["Test:M1:Fan"]],
                         ["2022-10-30 02:30:00+02:00", "2022-10-30 02:30:00+01:00", "2022-10-30 03:30:00+01:00"])


class Decimation(DataTestCase):
    def test_long_window_is_decimated(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        r = self.data("/data/Test/Test:Big:Ramp", {"since": "2022-01-01 01:00:00", "until": "2022-01-02 01:00:00", "max_points": 100})
        self.assertEqual(r.status, 200, r)
        points = r.json["data"]["process_variables_data"]["Test:Big:Ramp"]
        self.assertTrue(90 <= len(points) <= 100, len(points))
        self.assertEqual(set(points[0]), {"time", "data", "min", "max", "count", "std"})
        self.assertEqual(sum(p["count"] for p in points), 86401)
        self.assertTrue(all(type(p["count"]) is int for p in points))
        self.assertTrue(all(p["min"] <= p["data"] <= p["max"] for p in points))
        self.assertEqual(r.json["warnings"], [f"The data of Test:Big:Ramp was reduced to {len(points)} points."])
        self.assertIn("optimized_100(Test:Big:Ramp)", urllib.parse.unquote(self.fx.requests()[-1]))

    def test_short_window_stays_raw(self):
        r = self.data(body=dict(self.window, max_points=100))
        self.assertEqual(len(r.json["data"]["process_variables_data"]["Test:M1:Fan"]), 4)
        self.assertNotIn("min", r.json["data"]["process_variables_data"]["Test:M1:Fan"][0])
        self.assertEqual(r.json["warnings"], [])

    def test_raw_data_is_streamed(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        r = self.data("/data/Test", {"since": "2022-01-01 01:00:00", "until": "2022-01-03 01:00:00", "max_points": 0})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        points = r.json["data"]["process_variables_data"]["Test:Big:Ramp"]
        self.assertEqual(len(points), 172801)
        self.assertEqual(points[0], {"time": "2022-01-01 01:00:00+01:00", "data": 0.0})
        self.assertEqual(points[-1]["data"], 172800.0)
        self.assertEqual(r.json["data"]["process_variables_data"]["Test:M1:Fan"], [])  # all its samples come later
        self.assertEqual(r.json["warnings"], [])
        self.assertIn("pv=Test%3ABig%3ARamp", "".join(self.fx.requests()))  # no operator: raw


class ArchiverFaults(DataTestCase):
    def test_unknown_pv_as_empty_list(self):
        self.fx.mode("empty_unknown")
        r = self.data()
        self.assertEqual(r.json["data"]["process_variables_data"]["Test:M1:Unknown"], [])

    def test_slow_broken_garbage(self):
        for mode in ["slow", "broken", "garbage"]:
            with self.subTest(mode=mode):
                self.fx.mode(mode, delay=5)
                self.assertError(self.data(), 502, ARCHIVER_DOWN)
                self.assertError(self.data(body=dict(self.window, max_points=0)), 502, ARCHIVER_DOWN)
        self.fx.mode("normal")
        self.assertEqual(self.data().status, 200)

    def test_archiver_down(self):
        self.fx.stop()
        self.assertError(self.data(), 502, ARCHIVER_DOWN)
        self.assertError(self.s.request("GET", "/data/validate_pv_string/Test:M1:Fan", token=self.admin), 502, ARCHIVER_DOWN)
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.token).status, 200)

    def test_server_answers_others_while_data_waits(self):
        self.fx.mode("hold")
        order = []
        result = {}

        def fetch():
            result["data"] = self.s.request("POST", "/data/Test/Test:M1:Fan", token=self.token,
                                            json_body=dict(self.window, max_points=0))
            order.append("data")

        t = threading.Thread(target=fetch)
        t.start()
        deadline = time.monotonic() + 30
        while not self.fx.requests() and time.monotonic() < deadline:
            time.sleep(0.02)
        r = self.s.request("GET", "/auth/users/current", token=self.token)
        order.append("current")
        self.assertEqual(r.status, 200)
        self.fx.release()
        t.join(60)
        self.assertEqual(order, ["current", "data"])
        self.assertEqual(len(result["data"].json["data"]["process_variables_data"]["Test:M1:Fan"]), 4)

    def test_validate(self):
        self.assertEqual(self.s.request("GET", "/data/validate_pv_string/Test:M1:Fan", token=self.admin).json, {"pv_string_exists": True})
        self.assertEqual(self.s.request("GET", "/validate_pv_string/Nope:X/", token=self.admin).json, {"pv_string_exists": False})
        self.assertError(self.s.request("GET", "/validate_pv_string/Test:M1:Fan", token=self.token), 403,
                         "Only administrators are allowed to access this endpoint.")


class NoArchiver(ServerTestCase):
    def test_unset_archiver_url(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "A:B"})
        self.assertError(self.s.request("POST", "/data/A", token=self.admin, json_body={}), 502, ARCHIVER_DOWN)


if __name__ == "__main__":
    main()
