#!/usr/bin/env python3
"""Does scraping /metrics disturb the requests being served? (issue "Operate it like a service")

wrk drives GET /health and GET /auth/users/current at 32 connections; each run is paired with a run
of the same load while a scraper reads /metrics every --interval seconds (default 1: fifteen times
Prometheus' usual 15 s; 0: as fast as it answers, which on a 2-core machine also takes a core from wrk
and the server), and with a run of the bare SoupServer (bench/ceiling) as the stack's ceiling. Prints
the medians of the rounds: req/s, p50, p99, and p99 with scraping against p99 without. Asserts nothing.

    python3 bench/metrics_bench.py [--build build] [--seconds 5] [--rounds 3] [--interval 1]
"""
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
import rtplib  # noqa: E402
from http_bench import wrk  # noqa: E402


def scraper(url, stop, counts, interval):
    while not stop.is_set():
        with urllib.request.urlopen(url, timeout=10) as r:
            counts.append(len(r.read()))
        if interval > 0:
            stop.wait(interval)


def main():
    args = sys.argv[1:]
    build = args[args.index("--build") + 1] if "--build" in args else os.path.join(HERE, "..", "build")
    seconds = int(args[args.index("--seconds") + 1]) if "--seconds" in args else 5
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    interval = float(args[args.index("--interval") + 1]) if "--interval" in args else 1.0
    rtplib.SERVER = os.path.abspath(os.path.join(build, "src", "realtimeplot-server"))
    ceiling = subprocess.Popen([os.path.join(build, "bench", "ceiling")], stdout=subprocess.PIPE, text=True)
    ceiling_url = re.search(r"(http://\S+)", ceiling.stdout.readline()).group(1)
    s = rtplib.Server(env={"DEFAULT_ADMIN_PASSWORD": "bench admin pw", "RTP_METRICS_PUBLIC": "1"}, verbose=False)
    try:
        s.start()
        token = s.login("admin", "bench admin pw")
        rows = [("GET /health", s.url + "health", {}),
                ("GET /auth/users/current", s.url + "auth/users/current", {"x-access-tokens": token})]
        print(f"medians of {rounds} rounds of {seconds} s at 32 connections; a scrape every {interval} s")
        print(f"{'endpoint':28} {'ceiling req/s':>13} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'scraped: req/s':>14} {'p99 ms':>7} {'p99 ×':>6} {'scrapes/s':>9}")
        for name, url, headers in rows:
            base, scraped, ceil, rates = [], [], [], []
            for _ in range(rounds):
                ceil.append(wrk(ceiling_url, 32, seconds))
                base.append(wrk(url, 32, seconds, headers=headers))
                stop, counts = threading.Event(), []
                t = threading.Thread(target=scraper, args=(s.url + "metrics", stop, counts, interval))
                t.start()
                scraped.append(wrk(url, 32, seconds, headers=headers))
                stop.set()
                t.join()
                rates.append(len(counts) / seconds)

            def med(runs, i):
                return statistics.median(r[i] for r in runs)
            print(f"{name:28} {med(ceil, 0):13.0f} {med(base, 0):9.0f} {med(base, 1):7.2f} {med(base, 2):7.2f} "
                  f"{med(scraped, 0):14.0f} {med(scraped, 2):7.2f} {med(scraped, 2) / med(base, 2):6.2f} "
                  f"{statistics.median(rates):9.1f}")
        size = len(urllib.request.urlopen(s.url + "metrics", timeout=10).read())
        print(f"one scrape: {size} bytes")
        s.stop()
    finally:
        s.cleanup()
        ceiling.terminate()
        ceiling.wait()


if __name__ == "__main__":
    main()
