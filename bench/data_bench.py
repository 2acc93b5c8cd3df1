#!/usr/bin/env python3
"""Benchmark of /data (issue: "Archived PV data"). Prints figures; asserts nothing.

1. One PV with 1 000 000 archived points, fetched through the server with max_points 0
   (streamed raw), against fetching the same JSON straight from the archiver fixture with
   curl, in the same run: both times, the ratio, and the server's peak RSS (VmHWM).
2. Requests/s of a 500-point chart request (the default decimated path) at 32 connections,
   with wrk (Debian package wrk).

    python3 bench/data_bench.py [--server build/src/realtimeplot-server]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import rtplib  # noqa: E402


vm = rtplib.vm_mb


def main():
    args = sys.argv[1:]
    if "--server" in args:
        i = args.index("--server")
        rtplib.SERVER = os.path.abspath(args[i + 1])
    fx = rtplib.ArchiverFixture().start()
    start = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())
    fx.pv("Bench:One:Million", start=start, period=1, count=1000000, kind="sine")
    fx.pv("Bench:One:Chart", start=start, period=1, count=500, kind="sine")
    s = rtplib.Server(env={"ARCHIVER_URL": fx.url, "ARCHIVER_TIMEZONE": "UTC", "RTP_ARCHIVER_TIMEOUT": "30"}, verbose=False)
    try:
        s.start()
        token = s.login()
        for pv in ["Bench:One:Million", "Bench:One:Chart"]:
            s.request("POST", "/experiments/pvs", token=token, json_body={"pv_string": pv})
        since, until = "2022-01-01 00:00:00", "2022-01-12 13:46:39"
        q = urllib.parse.urlencode({"pv": "Bench:One:Million", "from": "2022-01-01T00:00:00.000Z", "to": "2022-01-12T13:46:39.000Z"})
        with tempfile.TemporaryDirectory() as d:
            direct_file = os.path.join(d, "direct.json")
            t0 = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", direct_file, f"{fx.url}/retrieval/data/getData.json?{q}"], check=True)
            direct = time.perf_counter() - t0
            direct_size = os.path.getsize(direct_file)
            body = json.dumps({"since": since, "until": until, "max_points": 0})
            out_file = os.path.join(d, "server.json")
            t0 = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", out_file, "-X", "POST", "-H", f"x-access-tokens: {token}",
                            "-d", body, f"{s.url}data/Exp/Bench:One:Million".replace("/Exp/", "/Bench/")], check=True)
            through = time.perf_counter() - t0
            with open(out_file) as f:
                n = len(json.load(f)["data"]["process_variables_data"]["Bench:One:Million"])
            server_size = os.path.getsize(out_file)
        peak = vm(s.proc.pid, "VmHWM")
        print(f"1M points straight from the fixture (curl): {direct:.2f} s, {direct_size / 1e6:.1f} MB")
        print(f"1M points through the server (max_points 0): {through:.2f} s, {server_size / 1e6:.1f} MB, {n} points")
        print(f"ratio server/direct: {through / direct:.2f} (target <= 1.5)")
        print(f"server peak RSS (VmHWM): {peak:.1f} MB (target <= 64 MB)")

        lua = os.path.join(tempfile.gettempdir(), f"rtp-bench-{os.getpid()}.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\n'
                    f'wrk.body = \'{{"since": "2022-01-01 00:00:00", "until": "2022-01-01 00:08:19"}}\'\n'
                    f'wrk.headers["x-access-tokens"] = "{token}"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        try:
            out = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", "10s", "--latency", "-s", lua,
                                  f"{s.url}data/Bench/Bench:One:Chart"], capture_output=True, text=True, timeout=120).stdout
        finally:
            os.unlink(lua)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"99%\s+([\d.]+\w+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"500-point chart request, 32 connections: {rps.group(1) if rps else '?'} requests/s, "
              f"p99 {p99.group(1) if p99 else '?'}, non-2xx {errors.group(1) if errors else 0}")
        s.stop()
    finally:
        s.cleanup()
        fx.stop()


if __name__ == "__main__":
    main()
