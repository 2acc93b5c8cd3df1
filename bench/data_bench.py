#!/usr/bin/env python3
"""Benchmark of /data (issue "Data out for analysis"). Prints figures; asserts nothing.

The archiver is bench/static_archiver (built in this tree): answers generated once into a directory
and served from memory by a small C server, so that it is never the bottleneck.

1. 4 PVs × 200 000 raw points through POST /data (max_points 0), as JSON and as CSV, against fetching
   the same four answers straight from the static archiver with curl (in parallel, as the server
   fetches them): both times, the ratio, and the server's peak RSS above idle (VmHWM − VmRSS).
2. 20 PVs × 500 points (the frontend's chart request, the default optimized path) at 32 connections
   with wrk, paired with the bare SoupServer ceiling (bench/ceiling) run just before it.

    python3 bench/data_bench.py [--build build] [--server PATH] [--rounds 3] [--seconds 5]

--server measures another binary (an older commit's, for a before/after pair) with this tree's tools.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtplib  # noqa: E402
from http_bench import status, wrk  # noqa: E402

START = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())


def answer(name, count, period=1.0):
    """The appliance's getData.json answer for `name`: count samples of a sine, one per `period` s."""
    import math
    parts = []
    for i in range(count):
        t = START + i * period
        secs = int(t)
        parts.append(f'{{"secs":{secs},"nanos":{int(round((t - secs) * 1e9))},"val":{math.sin(i / 10.0)!r},'
                     f'"severity":0,"status":0}}')
    return f'[{{"meta":{{"name":"{name}","PREC":"3","EGU":"mA"}},"data":[' + ",".join(parts) + "]}]"


def main():
    args = sys.argv[1:]
    build = os.path.abspath(args[args.index("--build") + 1] if "--build" in args else os.path.join(HERE, "..", "build"))
    rtplib.SERVER = os.path.abspath(args[args.index("--server") + 1]) if "--server" in args else \
        os.path.join(build, "src", "realtimeplot-server")
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    seconds = int(args[args.index("--seconds") + 1]) if "--seconds" in args else 5
    answers = tempfile.mkdtemp(prefix="rtp-bench-answers-")
    big = [f"Bench:Big:PV{i}" for i in range(4)]
    chart = [f"Chart:M:PV{i:02d}" for i in range(20)]
    for pv in big:
        with open(os.path.join(answers, pv), "w") as f:
            f.write(answer(pv, 200000))
    for pv in chart:
        text = answer(pv, 500)
        for expr in [pv, f"optimized_5000({pv})"]:  # 500 points: the appliance answers raw samples
            with open(os.path.join(answers, expr), "w") as f:
                f.write(text)
    archiver = subprocess.Popen([os.path.join(build, "bench", "static_archiver"), answers], stdout=subprocess.PIPE,
                                text=True)
    archiver_url = re.search(r"(http://\S+)", archiver.stdout.readline()).group(1)
    ceiling = subprocess.Popen([os.path.join(build, "bench", "ceiling")], stdout=subprocess.PIPE, text=True)
    ceiling_url = re.search(r"(http://\S+)", ceiling.stdout.readline()).group(1)
    s = rtplib.Server(env={"ARCHIVER_URL": archiver_url, "ARCHIVER_TIMEZONE": "Europe/Berlin",
                           "RTP_ARCHIVER_TIMEOUT": "30"}, verbose=False)
    work = tempfile.mkdtemp(prefix="rtp-bench-data-")
    try:
        s.start()
        token = s.login()
        r = s.request("POST", "/file/import", token=token,
                      body="".join(f"[PROCESS_VARIABLE];pv_string={pv}\n" for pv in big + chart))
        assert r.status == 200, r
        window = {"since": "2022-01-01 00:00:00", "until": "2022-01-04 00:00:00"}
        idle = status(s.proc.pid)["VmRSS"]

        def direct():
            def one(pv):
                out = os.path.join(work, "direct-" + pv)
                subprocess.run(["curl", "-s", "-o", out, f"{archiver_url}/retrieval/data/getData.json?pv={pv}"
                                f"&from=2021-12-31T23:00:00.000Z&to=2022-01-03T23:00:00.000Z"], check=True)
                return os.path.getsize(out)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                size = sum(pool.map(one, big))
            return time.perf_counter() - t0, size

        def through(fmt):
            out = os.path.join(work, "server." + fmt)
            body = json.dumps(dict(window, max_points=0, format=fmt))
            t0 = time.perf_counter()
            subprocess.run(["curl", "-s", "-f", "-o", out, "-X", "POST", "-H", f"x-access-tokens: {token}",
                            "-H", "Content-Type: application/json", "-d", body, f"{s.url}data/Bench"], check=True)
            return time.perf_counter() - t0, os.path.getsize(out)

        rows = {"direct": [], "json": [], "csv": []}
        for _ in range(rounds):
            rows["direct"].append(direct())
            rows["json"].append(through("json"))
            rows["csv"].append(through("csv"))
        peak = status(s.proc.pid)["VmHWM"] - idle
        d = statistics.median(t for t, _ in rows["direct"])
        print(f"4 PVs × 200 000 raw points ({rounds} rounds, medians):")
        print(f"  straight from the static archiver (curl, 4 in parallel): {d:.3f} s, "
              f"{rows['direct'][0][1] / 1e6:.1f} MB")
        for fmt in ["json", "csv"]:
            t = statistics.median(x for x, _ in rows[fmt])
            print(f"  through POST /data as {fmt.upper():4}: {t:.3f} s, {rows[fmt][0][1] / 1e6:.1f} MB, "
                  f"{t / d:.2f}× the archiver (target ≤ 3×)")
        print(f"  server peak RSS above idle: {peak:.1f} MB (idle {idle:.1f} MB; target ≤ 64 MB)")

        headers = {"x-access-tokens": token, "Content-Type": "application/json"}
        body = json.dumps({"since": "2022-01-01 01:00:00", "until": "2022-01-01 01:08:19"})
        results = []
        for _ in range(rounds):
            c = wrk(ceiling_url, 32, seconds)
            e = wrk(f"{s.url}data/Chart", 32, seconds, method="POST", body=body, headers=headers)
            results.append((c, e))
        check = s.request("POST", "/data/Chart", token=token, body=body, headers={"Content-Type": "application/json"})
        if check.status != 200:
            print(f"  (a chart request after the runs answered {check.status}: {check.raw[:200]})")
        c_rps = statistics.median(c[0] for c, _ in results)
        e_rps = statistics.median(e[0] for _, e in results)
        print(f"20 PVs × 500 points (the chart request), 32 connections ({rounds} × {seconds} s, medians):")
        print(f"  bare SoupServer ceiling: {c_rps:.0f} req/s")
        print(f"  POST /data/<exp>: {e_rps:.0f} req/s, p50 {statistics.median(e[1] for _, e in results):.1f} ms, "
              f"p99 {statistics.median(e[2] for _, e in results):.1f} ms, "
              f"non-2xx {sum(e[3] for _, e in results)}, "
              f"{statistics.median(e[0] / c[0] for c, e in results):.3f}× the ceiling")
        s.stop()
    finally:
        s.cleanup()
        archiver.terminate()
        ceiling.terminate()
        archiver.wait()
        ceiling.wait()
        shutil.rmtree(answers, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
