"""Integration tests of data out (issue: "Data out for analysis"): CSV/TSV export, the appliance's
operators, severity/status, the frontend's answers kept, against the archiver fixture."""
import csv
import http.client
import io
import json
import os
import socket
import subprocess
import time
import urllib.parse

from rtplib import PrivateBus, SERVER, main, reset_peak, vm_mb
from test_data import DataTestCase, ts

def parse_csv(text, sep=","):
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))


def as_number(cell):
    return None if cell == "" else float(cell)


class FrontendShapes(DataTestCase):
    """The frontend's own requests keep today's answers (issue: "Done when")."""

    def test_experiment_and_single_pv_with_and_without_a_window(self):
        now = int(time.time())
        self.fx.pv("Test:M1:Fan", samples=[[now - 600, 0, 1.5], [now - 300, 500000000, 2]])
        for path, body in [("/data/Test", {}), ("/data/Test/Test:M1:Fan", {}),
                           ("/data/Test", self.window), ("/data/Test/Test:M1:Fan", self.window)]:
            with self.subTest(path=path, body=body):
                r = self.data(path, body)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
                self.assertEqual(set(r.json), {"data", "warnings"})
                points = r.json["data"]["process_variables_data"]["Test:M1:Fan"]
                for p in points:
                    self.assertEqual(set(p), {"time", "data"})  # no severity, status or std unless asked
                if body == {}:
                    self.assertEqual([p["data"] for p in points], [1.5, 2])
                    self.assertRegex(points[1]["time"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.500000\+0[12]:00$")
                else:
                    self.assertEqual(r.json["warnings"], [])
                if path == "/data/Test":
                    self.assertEqual(sorted(r.json["data"]["process_variables_data"]),
                                     ["Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"])

    def test_bins_carry_std_and_integer_counts(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        r = self.data("/data/Test/Test:Big:Ramp", {"since": "2022-01-01 01:00:00", "until": "2022-01-01 02:00:00",
                                                   "max_points": 10})
        points = r.json["data"]["process_variables_data"]["Test:Big:Ramp"]
        self.assertEqual(set(points[0]), {"time", "data", "min", "max", "count", "std"})
        self.assertTrue(all(type(p["count"]) is int for p in points), points[:2])
        self.assertIn('"count":', r.raw)
        self.assertNotIn('.0,"std"', r.raw.replace('"max":', ""))  # count is written 360, not 360.0
        self.assertAlmostEqual(points[1]["std"], 103.9, delta=1)  # 360 consecutive integers


class Export(DataTestCase):
    def setUp(self):
        super().setUp()
        t0 = ts(2022, 1, 15, 12, 37, 34)
        self.t0 = t0
        self.fx.pv("Test:M1:Fan", samples=[[t0, 0, 1.0, 0, 0], [t0 + 2, 0, 2.5, 1, 4], [t0 + 4, 0, -3, 2, 5]])
        self.fx.pv("Test:M1:Str", samples=[[t0 + 1, 0, "=cmd|' /C calc'!A0"], [t0 + 2, 0, 'say "hi", then go'],
                                           [t0 + 3, 0, "-1 is text"], [t0 + 5, 0, "\tx"]])
        self.fx.pv("Test:M1:Unknown", samples=[[t0 + 3, 250000000, [1, 2.5, 3]]])  # a waveform

    def raw(self, **extra):
        """The window, raw: without max_points the columns of optimized bins are there (empty for raw samples)."""
        return dict(self.window, max_points=0, **extra)

    def export(self, body, path="/data/Test", headers=None):
        h = dict(headers or {})
        h["Content-Type"] = "application/json"
        return self.s.request("POST", path, token=self.token, body=json.dumps(body), headers=h)

    def test_csv_equals_the_json_answer_point_for_point(self):
        j = self.data(body=self.window).json["data"]["process_variables_data"]
        for align in ["none", "previous"]:
            with self.subTest(align=align):
                r = self.export(self.raw(format="csv", align=align))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("Content-Type"), "text/csv; charset=utf-8")
                self.assertEqual(r.header("Content-Disposition"),
                                 'attachment; filename="Test_20220115T133734_20220115T133740.csv"')
                self.assertIn("\r\n", r.raw)
                rows = parse_csv(r.raw)
                self.assertEqual(rows[0], ["time", "Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"])
                times = sorted({p["time"] for pts in j.values() for p in pts},
                               key=lambda t: next(p for pts in j.values() for p in pts if p["time"] == t)["time"])
                self.assertEqual([row[0] for row in rows[1:]], times)  # one row per distinct time, in order
                # every JSON point is in its row and column
                for col, pv in enumerate(["Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"], start=1):
                    last = ""
                    for row in rows[1:]:
                        point = next((p for p in j[pv] if p["time"] == row[0]), None)
                        if point is None:
                            self.assertEqual(row[col], last if align == "previous" else "", (pv, row))
                            continue
                        want = point["data"]
                        if isinstance(want, list):
                            self.assertEqual(json.loads(row[col]), want)  # a waveform: one cell, its JSON
                        elif isinstance(want, str):
                            self.assertEqual(row[col].lstrip("'") if want[:1] in "=+-@\t" else row[col], want)
                        else:
                            self.assertEqual(float(row[col]), want)
                        last = row[col]

    def test_formula_guard_and_quoting(self):
        r = self.export(dict(self.window, format="csv"), "/data/Test/Test:M1:Str")
        rows = parse_csv(r.raw)
        self.assertEqual([row[1] for row in rows[1:]],
                         ["'=cmd|' /C calc'!A0", 'say "hi", then go', "'-1 is text", "'\tx"])
        self.assertIn('"say ""hi"", then go"', r.raw)  # RFC 4180: quoted, quotes doubled
        # numbers are not text: a negative number keeps its sign
        r = self.export(dict(self.window, format="csv"), "/data/Test/Test:M1:Fan")
        self.assertEqual(parse_csv(r.raw)[-1][1], "-3")

    def test_tsv_accept_header_and_time_formats(self):
        r = self.export(self.raw(), "/data/Test/Test:M1:Fan", headers={"Accept": "text/tab-separated-values"})
        self.assertEqual(r.header("Content-Type"), "text/tab-separated-values; charset=utf-8")
        self.assertTrue(r.header("Content-Disposition").endswith('.tsv"'))
        rows = parse_csv(r.raw, "\t")
        self.assertEqual(rows[1], ["2022-01-15 13:37:34+01:00", "1.0"])
        r = self.export(self.window, "/data/Test/Test:M1:Fan", headers={"Accept": "text/csv"})
        self.assertEqual(r.header("Content-Type"), "text/csv; charset=utf-8")
        # an explicit format wins over Accept
        r = self.export(dict(self.window, format="json"), "/data/Test/Test:M1:Fan", headers={"Accept": "text/csv"})
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
        r = self.export(dict(self.window, format="csv", time_format="iso"), "/data/Test/Test:M1:Unknown")
        self.assertEqual(parse_csv(r.raw)[1][0], "2022-01-15T12:37:37.250000Z")
        r = self.export(dict(self.window, format="csv", time_format="epoch"), "/data/Test/Test:M1:Unknown")
        self.assertEqual(parse_csv(r.raw)[1][0], f"{self.t0 + 3}.250000000")
        # and in JSON
        r = self.export(dict(self.window, time_format="iso"), "/data/Test/Test:M1:Fan")
        self.assertEqual(r.json["data"]["process_variables_data"]["Test:M1:Fan"][0]["time"], "2022-01-15T12:37:34Z")

    def test_severity_and_status(self):
        r = self.export(dict(self.window, include=["severity", "status"]), "/data/Test/Test:M1:Fan")
        self.assertEqual(r.json["data"]["process_variables_data"]["Test:M1:Fan"], [
            {"time": "2022-01-15 13:37:34+01:00", "data": 1.0, "severity": 0, "status": 0},
            {"time": "2022-01-15 13:37:36+01:00", "data": 2.5, "severity": 1, "status": 4},
            {"time": "2022-01-15 13:37:38+01:00", "data": -3, "severity": 2, "status": 5}])
        r = self.export(dict(self.window, include=["status"]), "/data/Test/Test:M1:Fan")
        self.assertEqual(set(r.json["data"]["process_variables_data"]["Test:M1:Fan"][0]), {"time", "data", "status"})
        r = self.export(self.raw(format="csv", include=["severity"]), "/data/Test/Test:M1:Fan")
        rows = parse_csv(r.raw)
        self.assertEqual(rows[0], ["time", "Test:M1:Fan", "Test:M1:Fan.severity", "Test:M1:Fan.status"])
        self.assertEqual(rows[2][1:], ["2.5", "1", "4"])

    def test_meta_from_the_appliance_cached(self):
        t0 = self.t0
        self.fx.pv("Test:M1:Fan", samples=[[t0, 0, 1.0]], meta={"EGU": "mA", "PREC": "3", "DESC": "Fan current",
                                                                "HOPR": "20", "LOPR": "0"})
        r = self.export(dict(self.window, include=["meta"]))
        self.assertEqual(r.status, 200, r)
        meta = r.json["data"]["process_variables_meta"]
        self.assertEqual(meta["Test:M1:Fan"], {"name": "Test:M1:Fan", "DBRType": "DBR_SCALAR_DOUBLE", "paused": "false",
                                               "EGU": "mA", "PREC": "3", "DESC": "Fan current", "HOPR": "20", "LOPR": "0"})
        self.assertEqual(set(meta), {"Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"})
        self.assertIsNotNone(meta["Test:M1:Str"])
        self.assertEqual(r.json["data"]["process_variables_data"]["Test:M1:Fan"][0]["data"], 1.0)
        asked = [q for q in self.fx.requests() if "getMetadata" in q]
        self.assertEqual(len(asked), 3)
        r = self.export(dict(self.window, include=["meta"]), "/data/Test/Test:M1:Fan")
        self.assertEqual(set(r.json["data"]["process_variables_meta"]), {"Test:M1:Fan"})
        self.assertEqual(len([q for q in self.fx.requests() if "getMetadata" in q]), 3)  # kept for RTP_METADATA_CACHE_S
        self.assertNotIn("process_variables_meta", self.export(self.window).json["data"])
        self.assertError(self.export(dict(self.window, include=["meta"], format="csv")), 400,
                         'include: "meta" is given in JSON answers only; a CSV or TSV file has no room for it.')

    def test_binned_columns(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        body = {"since": "2022-01-01 01:00:00", "until": "2022-01-01 02:00:00", "max_points": 10}
        j = self.export(body, "/data/Test/Test:Big:Ramp").json["data"]["process_variables_data"]["Test:Big:Ramp"]
        rows = parse_csv(self.export(dict(body, format="csv"), "/data/Test/Test:Big:Ramp").raw)
        self.assertEqual(rows[0], ["time", "Test:Big:Ramp", "Test:Big:Ramp.min", "Test:Big:Ramp.max",
                                   "Test:Big:Ramp.count", "Test:Big:Ramp.std"])
        self.assertEqual(len(rows) - 1, len(j))
        for row, p in zip(rows[1:], j):
            self.assertEqual(row[0], p["time"])
            self.assertEqual([float(row[1]), float(row[2]), float(row[3]), int(row[4]), float(row[5])],
                             [p["data"], p["min"], p["max"], p["count"], p["std"]])
        # a window small enough for raw samples leaves the bin columns empty
        rows = parse_csv(self.export(dict(self.window, format="csv", max_points=10), "/data/Test/Test:M1:Fan").raw)
        self.assertEqual(rows[1], ["2022-01-15 13:37:34+01:00", "1.0", "", "", "", ""])

    def test_bad_keys_fetch_nothing(self):
        cases = [({"format": "xlsx"}, 'format: Value must be "json", "csv" or "tsv".'),
                 ({"format": 1}, 'format: Value must be "json", "csv" or "tsv".'),
                 ({"align": "next"}, 'align: Value must be "none" or "previous".'),
                 ({"time_format": "unix"}, 'time_format: Value must be "local", "iso" or "epoch".'),
                 ({"include": ["severity", "colour"]}, 'include: Value must be a list of "severity", "status" and "meta".'),
                 ({"include": "severity"}, 'include: Value must be a list of "severity", "status" and "meta".'),
                 ({"include": [["severity"]]}, 'include: Value must be a list of "severity", "status" and "meta".'),
                 ({"operator": "average"}, "operator: Unknown operator. Use one of raw, optimized, optimLastSample, "
                                           "mean, median, min, max, std, count, firstSample, lastSample, firstFill, "
                                           "lastFill, linear, nth."),
                 ({"operator": ["mean"]}, "operator: Unknown operator. Use one of raw, optimized, optimLastSample, "
                                          "mean, median, min, max, std, count, firstSample, lastSample, firstFill, "
                                          "lastFill, linear, nth."),
                 ({"operator": "mean"}, "bin_s: The operator mean needs a bin width in seconds."),
                 ({"operator": "mean", "bin_s": 0}, "bin_s: Value must be a whole number of seconds from 1 to 31622400."),
                 ({"operator": "mean", "bin_s": 1.5}, "bin_s: Value must be a whole number of seconds from 1 to 31622400."),
                 ({"operator": "mean", "bin_s": 10 ** 9}, "bin_s: Value must be a whole number of seconds from 1 to 31622400."),
                 ({"operator": "mean", "bin_s": 10 ** 30}, "bin_s: The number 1000000000000000000000000000000 is outside "
                                                           "the range this server accepts."),
                 ({"operator": "raw", "bin_s": 10}, "bin_s: Only the N-second operators (mean, median, min, max, std, "
                                                    "count, firstSample, lastSample, firstFill, lastFill, linear, nth) "
                                                    "take a bin width."),
                 ({"bin_s": 10}, "bin_s: Only the N-second operators (mean, median, min, max, std, count, firstSample, "
                                 "lastSample, firstFill, lastFill, linear, nth) take a bin width.")]
        for extra, message in cases:
            with self.subTest(extra=extra):
                self.assertError(self.export(dict(self.window, format="csv", **extra) if "format" not in extra
                                             else dict(self.window, **extra)), 400, message)
        self.assertEqual(self.fx.requests(), [])  # nothing reached the archiver



class ExportMemory(DataTestCase):
    # ASan's quarantine would count 256 MB of freed memory as held; the Python fixture that makes a
    # million samples may pause longer than 1 s on a busy machine (curl's stall limit is the timeout)
    extra_env = {"ASAN_OPTIONS": "detect_leaks=0:quarantine_size_mb=8", "RTP_ARCHIVER_TIMEOUT": "30"}

    def test_refusals_in_the_callers_language(self):
        user, token = self.create_user("greta", preferred_language="de")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [user["user_id"]]})
        r = self.s.request("POST", "/data/Test", token=token, json_body={"format": "xlsx"})
        self.assertError(r, 400, 'format: Der Wert muss "json", "csv" oder "tsv" sein.')
        r = self.s.request("POST", "/data/Test", token=token, json_body={"operator": "mean"})
        self.assertError(r, 400, "bin_s: Der Operator mean braucht eine Intervallbreite in Sekunden.")

    def test_export_of_a_million_points_streams_in_bounded_memory(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        self.fx.pv("Test:Big:Ramp", start=ts(2022, 1, 1, 0, 0), period=0.5, count=1000000)
        self.fx.pv("Test:M1:Fan", start=ts(2022, 1, 1, 0, 0), period=7, count=100000)
        base = reset_peak(self.s.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=120)
        body = json.dumps({"since": "2022-01-01 01:00:00", "until": "2022-01-06 19:53:20", "max_points": 0,
                           "format": "csv", "align": "previous"})
        conn.request("POST", "/data/Test", body=body, headers={"x-access-tokens": self.token,
                                                               "Content-Type": "application/json"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        rows = 0
        header = None
        last = None
        for line in io.TextIOWrapper(r, encoding="utf-8", newline=""):
            if header is None:
                header = line
                continue
            rows += 1
            last = line
        conn.close()
        grown = vm_mb(self.s.proc.pid, "VmHWM") - base
        print(f"1 000 000-row CSV export: peak RSS {grown:.1f} MB above the start")
        self.assertEqual(header, "time,Test:Big:Ramp,Test:M1:Fan,Test:M1:Str,Test:M1:Unknown\r\n")
        # the ramp's 1 000 000 samples; the fan's times (every 7 s) are among them
        self.assertEqual(rows, 1000000)
        self.assertEqual(last.split(",")[1], "999999.0")
        self.assertLess(grown, 64)


class NonReadingClients(DataTestCase):
    """Clients that ask for a long CSV export (one transfer per PV) or a JSON answer of several PVs (one
    getDataForPVs.json transfer) and never read: dropped after RTP_CLIENT_TIMEOUT, memory bounded,
    everybody else served."""
    extra_env = {"RTP_CLIENT_TIMEOUT": "2", "RTP_ARCHIVER_TIMEOUT": "30",
                 "ASAN_OPTIONS": "detect_leaks=0:quarantine_size_mb=8"}

    def test_they_starve_nobody_and_hold_little(self):
        import socket
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        base = reset_peak(self.s.proc.pid)
        sockets = []
        for i in range(8):
            body = json.dumps({"max_points": 0, "since": "2022-01-01 01:00:00", "until": "2022-01-06 00:00:00",
                               "format": "csv" if i % 2 else "json"}).encode()
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(("127.0.0.1", self.s.port))
            c.sendall(b"POST /data/Test HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"x-access-tokens: " + self.token.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                      b"\r\n\r\n" + body)
            sockets.append(c)
            self.addCleanup(c.close)
        deadline = time.monotonic() + 60
        while self.s.stderr().count("it took nothing of its streamed answer") < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.s.stderr().count("it took nothing of its streamed answer"), 8)
        grown = vm_mb(self.s.proc.pid, "VmHWM") - base
        print(f"8 non-reading clients of 400 000-point answers: peak RSS {grown:.1f} MB above the start")
        self.assertLess(grown, 100)
        r = self.data("/data/Test/Test:M1:Fan", dict(self.window, format="csv", max_points=0))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(parse_csv(r.raw)), 5)


class ClientsThatLeave(DataTestCase):
    """Clients that close their connection while the appliance is still answering (wrk ending a run,
    a browser tab closed): their transfers stop, the connections are freed, nothing is returned twice."""

    def test_the_server_goes_on(self):
        self.fx.mode("slow", delay=1)
        body = json.dumps(dict(self.window, max_points=0)).encode()
        for _ in range(2):
            clients = []
            for i in range(12):
                c = socket.create_connection(("127.0.0.1", self.s.port))
                c.sendall(b"POST /data/Test HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"x-access-tokens: " + self.token.encode() + b"\r\nContent-Length: " +
                          str(len(body)).encode() + b"\r\n\r\n" + body)
                clients.append(c)
            time.sleep(0.3)
            for c in clients:
                c.close()
            time.sleep(1.5)
        self.fx.mode("normal")
        r = self.data()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["data"]["process_variables_data"]["Test:M1:Fan"]), 4)
        self.assertNotIn("CRITICAL", self.s.stderr())
        self.assertNotIn("stopped by the reader", self.s.stderr())


class Operators(DataTestCase):
    def test_every_operator_reaches_the_appliance(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        window = {"since": "2022-01-01 01:00:00", "until": "2022-01-01 01:10:00"}
        for op in ["mean", "median", "min", "max", "std", "count", "firstSample", "lastSample", "firstFill",
                   "lastFill", "linear", "nth"]:
            with self.subTest(op=op):
                r = self.data("/data/Test/Test:Big:Ramp", dict(window, operator=op, bin_s=60))
                self.assertEqual(r.status, 200, r)
                self.assertIn(f"pv={op}_60(Test:Big:Ramp)", urllib.parse.unquote(self.fx.requests()[-1]))
                points = r.json["data"]["process_variables_data"]["Test:Big:Ramp"]
                self.assertEqual(set(points[0]), {"time", "data"})
                if op != "nth":
                    self.assertEqual(len(points), 11)  # eleven minute bins, from 00:00 to 00:10 UTC
                    self.assertEqual(points[1]["time"], "2022-01-01 01:01:00+01:00")
        got = {op: self.data("/data/Test/Test:Big:Ramp", dict(window, operator=op, bin_s=60)).json[
            "data"]["process_variables_data"]["Test:Big:Ramp"][1]["data"] for op in ["mean", "min", "max", "count"]}
        self.assertEqual(got, {"mean": 89.5, "min": 60.0, "max": 119.0, "count": 60.0})
        for op, expr in [("raw", "Test:Big:Ramp"), ("optimized", "optimized_50(Test:Big:Ramp)"),
                         ("optimLastSample", "optimLastSample_50(Test:Big:Ramp)")]:
            with self.subTest(op=op):
                r = self.data("/data/Test/Test:Big:Ramp", dict(window, operator=op, max_points=50))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(self.fx.requests()[-1]).query)["pv"],
                                 [expr])
        # an N-second operator in CSV: one value column
        r = self.s.request("POST", "/data/Test/Test:Big:Ramp", token=self.token,
                           json_body=dict(window, operator="mean", bin_s=300, format="csv"))
        self.assertEqual(parse_csv(r.raw), [["time", "Test:Big:Ramp"], ["2022-01-01 01:00:00+01:00", "149.5"],
                                            ["2022-01-01 01:05:00+01:00", "449.5"], ["2022-01-01 01:10:00+01:00", "600.0"]])


class Search(DataTestCase):
    def test_admins_find_archived_names(self):
        self.fx.pv("Other:X:Temp", samples=[[1, 0, 1.0]])
        self.fx.pv("Test:M2:Temp", samples=[[1, 0, 1.0]])
        r = self.s.request("GET", "/archiver/pvs?pattern=*:Temp", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"pvs": [
            {"pv_string": "Other:X:Temp", "configured": False, "experiment_short_id": None},
            {"pv_string": "Test:M2:Temp", "configured": False, "experiment_short_id": None}]})
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.fx.requests()[-1]).query)
        self.assertEqual(urllib.parse.urlsplit(self.fx.requests()[-1]).path, "/retrieval/bpl/getMatchingPVs")
        self.assertEqual(q, {"pv": ["*:Temp"], "limit": ["100"]})
        r = self.s.request("GET", "/archiver/pvs?regex=Test:M1:.*&limit=2", token=self.admin)
        self.assertEqual(r.json, {"pvs": [
            {"pv_string": "Test:M1:Fan", "configured": True, "experiment_short_id": "Test"},
            {"pv_string": "Test:M1:Str", "configured": True, "experiment_short_id": "Test"}]})
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.fx.requests()[-1]).query)
        self.assertEqual(q, {"regex": ["Test:M1:.*"], "limit": ["2"]})

    def test_refusals(self):
        self.assertError(self.s.request("GET", "/archiver/pvs?pattern=*", token=self.token), 403,
                         "Only administrators are allowed to access this endpoint.")
        self.assertEqual(self.s.request("GET", "/archiver/pvs?pattern=*").status, 401)
        both = "pattern: Give either a glob pattern (pattern=…) or a regular expression (regex=…)."
        for query in ["", "?pattern=", "?pattern=a&regex=b", "?limit=5"]:
            with self.subTest(query=query):
                self.assertError(self.s.request("GET", "/archiver/pvs" + query, token=self.admin), 400, both)
        for limit in ["0", "1001", "ten", "-1", "99999999999999999999999"]:
            with self.subTest(limit=limit):
                self.assertError(self.s.request("GET", f"/archiver/pvs?pattern=*&limit={limit}", token=self.admin), 400,
                                 "limit: Value must be an integer from 1 to 1000.")
        self.assertEqual(self.fx.requests(), [])
        self.fx.missing("/retrieval/bpl/getMatchingPVs")
        self.assertError(self.s.request("GET", "/archiver/pvs?pattern=*", token=self.admin), 502,
                         "Could not get process variable data from archiver.")
        self.fx.missing()
        self.fx.mode("garbage")
        self.assertError(self.s.request("GET", "/archiver/pvs?pattern=*", token=self.admin), 502,
                         "Could not get process variable data from archiver.")


class ValuesAt(DataTestCase):
    def setUp(self):
        super().setUp()
        t0 = ts(2022, 1, 15, 12, 37, 34)
        self.fx.pv("Test:M1:Fan", samples=[[t0 - 100, 0, 9.5, 0, 0], [t0, 250000000, 1.25, 1, 4], [t0 + 60, 0, 3.0]])
        self.fx.pv("Test:M1:Str", samples=[[t0 + 1, 0, "on"]])

    def check(self):
        r = self.data("/data/Test/at", {"at": "2022-01-15 13:37:40"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"at": "2022-01-15 13:37:40+01:00", "values": {
            "Test:M1:Fan": {"time": "2022-01-15 13:37:34.250000+01:00", "data": 1.25, "severity": 1, "status": 4},
            "Test:M1:Str": {"time": "2022-01-15 13:37:35+01:00", "data": "on", "severity": 0, "status": 0},
            "Test:M1:Unknown": None}})
        r = self.data("/data/Test/at", {"at": "2022-01-15T12:37:00Z"})
        self.assertEqual(r.json["values"], {
            "Test:M1:Fan": {"time": "2022-01-15 13:35:54+01:00", "data": 9.5, "severity": 0, "status": 0},
            "Test:M1:Str": None, "Test:M1:Unknown": None})

    def test_from_get_data_at_time(self):
        self.check()
        posts = [q for q in self.fx.requests() if "getDataAtTime" in q]
        self.assertEqual(len(posts), 2)  # one request per moment, for every PV
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(posts[0]).query)
        self.assertEqual(q, {"at": ["2022-01-15T12:37:40.000Z"], "includeProxies": ["true"]})
        body = self.fx.requests()[self.fx.requests().index(posts[0]) + 1]
        self.assertEqual(json.loads(body[len("body: "):]), ["Test:M1:Fan", "Test:M1:Str", "Test:M1:Unknown"])
        self.assertFalse(any("getData.json" in q for q in self.fx.requests()))

    def test_older_appliance_falls_back_to_get_data(self):
        self.fx.missing("/retrieval/data/getDataAtTime")
        self.check()
        self.assertTrue(any("getData.json" in q for q in self.fx.requests()))

    def test_refusals(self):
        _, stranger = self.create_user("stan")
        self.assertError(self.data("/data/Test/at", {"at": "2022-01-15 13:37:40"}, token=stranger), 403,
                         "Only users that are assigned to the experiment and admins can access it.")
        self.assertError(self.data("/data/Nope/at", {"at": "2022-01-15 13:37:40"}), 404,
                         "The experiment (Nope) is not present in the database.")
        self.assertError(self.data("/data/Test/at", {"at": "noon"}), 400,
                         "at: The time (noon) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.")
        self.assertError(self.data("/data/Test/at", {"at": 12}), 400,
                         "at: The time (12) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.")
        self.assertEqual(self.fx.requests(), [])
        self.fx.mode("garbage")
        self.assertError(self.data("/data/Test/at", {"at": "2022-01-15 13:37:40"}), 502,
                         "Could not get process variable data from archiver.")
        # no time: now
        self.fx.mode("normal")
        r = self.data("/data/Test/at", {})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["values"]["Test:M1:Fan"]["data"], 3.0)


class DBusData(DataTestCase):
    """D-Bus GetData and `rtpctl data`: the same answers as POST /data, written into a pipe."""
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
        return subprocess.run([self.RTPCTL, *args], env=self.env, capture_output=True, timeout=120)

    def test_same_answers_as_http(self):
        for args, body in [(["--csv"], {"format": "csv"}), ([], {}), (["--tsv", "--include", "severity"],
                                                                   {"format": "tsv", "include": ["severity"]}),
                           (["--max-points", "0", "--time-format", "epoch", "--align", "previous", "--csv"],
                            {"max_points": 0, "time_format": "epoch", "align": "previous", "format": "csv"})]:
            with self.subTest(args=args):
                r = self.ctl("data", "Test", "--since", self.window["since"], "--until", self.window["until"], *args)
                self.assertEqual(r.returncode, 0, r.stderr)
                http_answer = self.data(body=dict(self.window, **body))
                self.assertEqual(r.stdout.decode(), http_answer.raw)
        r = self.ctl("data", "Test", "Test:M1:Str", "--since", self.window["since"], "--until", self.window["until"],
                     "--csv", "--max-points", "0")
        self.assertEqual(r.stdout.decode(), "time,Test:M1:Str\r\n2022-01-15 13:37:35+01:00,on\r\n")

    def test_a_long_export_through_the_pipe(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        r = self.ctl("data", "Test", "Test:Big:Ramp", "--since", "2022-01-01 01:00:00", "--until", "2022-01-03 01:00:00",
                     "--max-points", "0", "--csv")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = r.stdout.decode().split("\r\n")
        self.assertEqual(rows[0], "time,Test:Big:Ramp")
        self.assertEqual(len(rows), 172801 + 2)  # the header, the rows, and the empty text after the last \r\n
        self.assertEqual(rows[-2], "2022-01-03 01:00:00+01:00,172800.0")

    def test_refusals(self):
        r = self.ctl("data", "Nope", "--csv")
        self.assertEqual((r.returncode, r.stderr.decode()), (1, "rtpctl: The experiment (Nope) is not present in the database.\n"))
        r = self.ctl("data", "Test", "Test:Other", "--csv")
        self.assertEqual(r.stderr.decode(), "rtpctl: The process variable (Test:Other) is not present in the database.\n")
        r = self.ctl("data", "Test", "--operator", "mean")
        self.assertEqual(r.stderr.decode(), "rtpctl: bin_s: The operator mean needs a bin width in seconds.\n")
        r = self.ctl("data", "Test", "--since", "noon")
        self.assertEqual(r.stderr.decode(),
                         "rtpctl: since: The time (noon) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.\n")
        r = self.ctl("data", "Test", "--colour", "red")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(self.fx.requests(), [])
        r = subprocess.run(["gdbus", "call", "--session", "--dest", "org.realtimeplot.Server1", "--object-path",
                            "/org/realtimeplot/Server1", "--method", "org.realtimeplot.Server1.GetData", "Test", "",
                            "{'colour': <'red'>}", "0"], env=self.env, capture_output=True, text=True, timeout=60)
        self.assertIn("colour: not an option of GetData", r.stderr)
        self.fx.mode("broken")
        r = self.ctl("data", "Test", "--csv")
        self.assertEqual((r.returncode, r.stderr.decode()), (1, "rtpctl: Could not get process variable data from archiver.\n"))

    def test_a_reader_that_goes_away(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:Big:Ramp"})
        p = subprocess.Popen(f"'{self.RTPCTL}' data Test Test:Big:Ramp --since '2022-01-01 01:00:00' "
                             f"--until '2022-01-03 01:00:00' --max-points 0 --csv | head -c 100 > /dev/null",
                             shell=True, env=self.env)
        p.wait(120)
        deadline = time.monotonic() + 30
        while "cannot be written" not in self.s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("GetData: the caller's descriptor cannot be written", self.s.stderr())
        self.assertEqual(self.data().status, 200)  # the server goes on


if __name__ == "__main__":
    main()
