#!/usr/bin/env python3
"""The bench table of README "Performance": requests/s and p50/p99 latency at 1, 32 and 128
connections (wrk, Debian package wrk) for the main endpoints and for a bare SoupServer answering
constant JSON (bench/ceiling, built in this tree) as the stack's ceiling, with the ratio of each
to the ceiling; idle and peak RSS (and RssAnon) and start-up time. Prints figures, asserts nothing.

The machine is a VM whose speed drifts by ±20 % over minutes, so every run of an endpoint is paired
with a run of the ceiling just before it, each pair is repeated (--rounds), and the table shows
medians: req/s and latencies of the endpoint's runs, and the median of the paired ratios.

    python3 bench/http_bench.py [--build build] [--seconds 3] [--rounds 3] [--experiments 50] [--only TEXT]

--experiments N imports N experiments of 20 PVs (GET /experiments answers grow with it); --only keeps the
endpoints whose name contains TEXT (the ceiling is always run).
"""
import statistics
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rtplib  # noqa: E402


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon"):
                out[k] = int(v.split()[0]) / 1024
    return out


def wrk(url, conns, seconds, method="GET", body=None, headers=None, delay_ms=0, realtime=False):
    """(req/s, p50 ms, p99 ms, non-2xx answers, longest ms, requests unanswered within 2 s) of a wrk run.

    delay_ms > 0: each connection waits that long after an answer before its next request (wrk's delay()
    hook), so that the load is paced instead of as fast as the server answers; the latencies exclude the wait.
    realtime: wrk runs at SCHED_FIFO 10 (root only), so that its own wakeups do not wait for busy cores."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "{method}"\n')
        if body is not None:
            f.write(f"wrk.body = {json.dumps(body)}\n")
        for k, v in (headers or {}).items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
        if delay_ms > 0:
            f.write(f"function delay() return {delay_ms} end\n")
        script = f.name
    try:
        out = subprocess.run((["chrt", "-f", "10"] if realtime else []) + ["wrk", "-t", "2" if conns > 1 else "1", "-c", str(conns), "-d", f"{seconds}s", "--latency",
                              "-s", script, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script)

    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    top = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)  # avg, stdev, max
    longest = float(top.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[top.group(2)] if top else float("nan")
    late = re.search(r"Socket errors:.*timeout (\d+)", out)  # no answer within wrk's 2 s: not in the latencies
    return (float(rps.group(1)) if rps else 0.0, ms("50%"), ms("99%"), int(bad.group(1)) if bad else 0, longest,
            int(late.group(1)) if late else 0)


def main():
    args = sys.argv[1:]
    build = args[args.index("--build") + 1] if "--build" in args else os.path.join(HERE, "..", "build")
    seconds = int(args[args.index("--seconds") + 1]) if "--seconds" in args else 3
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    n_experiments = int(args[args.index("--experiments") + 1]) if "--experiments" in args else 50
    only = args[args.index("--only") + 1] if "--only" in args else None
    rtplib.SERVER = os.path.abspath(os.path.join(build, "src", "realtimeplot-server"))
    ceiling = subprocess.Popen([os.path.join(build, "bench", "ceiling")], stdout=subprocess.PIPE, text=True)
    ceiling_url = re.search(r"(http://\S+)", ceiling.stdout.readline()).group(1)

    fx = rtplib.ArchiverFixture().start()
    start = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())
    lines = []
    for e in range(n_experiments):
        lines.append(f"[EXPERIMENT];short_id=E{e:02d};human_readable_name=Experiment {e}")
        lines += [f"[PROCESS_VARIABLE];pv_string=E{e:02d}:M:PV{p:02d};human_readable_name=PV {p}" for p in range(20)]
    for p in range(10):
        fx.pv(f"Data:M:PV{p}", start=start, period=1, count=500, kind="sine")
        lines.append(f"[PROCESS_VARIABLE];pv_string=Data:M:PV{p}")

    s = rtplib.Server(env={"ARCHIVER_URL": fx.url, "ARCHIVER_TIMEZONE": "UTC", "DEFAULT_ADMIN_PASSWORD": "bench admin pw",
                           "RTP_LOGIN_MAX_FAILURES": "1000000"}, verbose=False)
    try:
        t0 = time.perf_counter()
        s.start()
        startup = time.perf_counter() - t0
        token = s.login("admin", "bench admin pw")
        r = s.request("POST", "/file/import", token=token, body="\n".join(lines).encode(), timeout=300)
        assert r.json["number_of_process_variables_now_in_database"] == n_experiments * 20 + 10, r.json
        time.sleep(31)  # the server trims freed memory every 30 s
        idle = status(s.proc.pid)
        auth = {"x-access-tokens": token}
        basic = {"Authorization": "Basic YWRtaW46YmVuY2ggYWRtaW4gcHc="}  # admin:bench admin pw
        rows = [
            ("bare SoupServer, constant JSON (ceiling)", ceiling_url, "GET", None, {}),
            ("GET /auth/users/current", s.url + "auth/users/current", "GET", None, auth),
            ("GET /experiments/pvs/<pv>", s.url + "experiments/pvs/E07:M:PV03", "GET", None, auth),
            ("GET /experiments/<id>", s.url + "experiments/E07", "GET", None, auth),
            (f"GET /experiments ({n_experiments} × 20 PVs)", s.url + "experiments", "GET", None, auth),
            ("POST /data/<exp> (10 PVs × 500 points)", s.url + "data/Data", "POST",
             '{"since": "2022-01-01 00:00:00", "until": "2022-01-01 00:08:19"}', dict(auth, **{"Content-Type": "application/json"})),
            ("POST /auth/get_access_token (argon2id)", s.url + "auth/get_access_token", "POST", None, basic),
        ]
        runs = {}    # (name, conns) → [(rps, p50, p99, bad)]
        ratios = {}  # (name, conns) → [rps / the paired ceiling run's rps]
        hwm = {}
        ceiling_row = rows[0]
        if only is not None:
            rows = [rows[0]] + [r for r in rows[1:] if only in r[0]]
        for name, url, method, body, headers in rows[1:]:
            for conns in (1, 32, 128):
                for _ in range(rounds):
                    c = wrk(ceiling_row[1], conns, seconds)
                    r = wrk(url, conns, seconds, method, body, headers)
                    runs.setdefault((ceiling_row[0], conns), []).append(c)
                    runs.setdefault((name, conns), []).append(r)
                    ratios.setdefault((name, conns), []).append(r[0] / c[0] if c[0] else 0)
            hwm[name] = status(s.proc.pid)["VmHWM"]
        peak = status(s.proc.pid)
        print(f"medians of {rounds} rounds of {seconds} s, each paired with a ceiling run")
        print(f"{'endpoint':45} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'× ceiling':>9} {'non-2xx':>7}")
        for name, *_ in rows:
            for conns in (1, 32, 128):
                rs = runs[(name, conns)]
                rps = statistics.median(r[0] for r in rs)
                p50 = statistics.median(r[1] for r in rs)
                p99 = statistics.median(r[2] for r in rs)
                bad = sum(r[3] for r in rs)
                ratio = statistics.median(ratios[(name, conns)]) if name != ceiling_row[0] else 1.0
                print(f"{name:45} {conns:5d} {rps:10.0f} {p50:8.2f} {p99:8.2f} {ratio:9.2f} {bad:7d}")
        print("server peak RSS after each endpoint's runs: " + ", ".join(f"{n.split(' (')[0]}: {v:.0f} MB" for n, v in hwm.items()))
        print(f"start-up to 'Listening': {startup * 1000:.0f} ms (includes the first admin's argon2id hash)")
        print(f"idle: RSS {idle['VmRSS']:.1f} MB, RssAnon {idle['RssAnon']:.1f} MB; peak RSS {peak['VmHWM']:.1f} MB")
        s.stop()
    finally:
        s.cleanup()
        fx.stop()
        ceiling.terminate()
        ceiling.wait()


if __name__ == "__main__":
    main()
