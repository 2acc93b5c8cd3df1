#!/usr/bin/env python3
"""Benchmark: import a .rtpdb file of N process variables (default 10 000) through POST /file/import
into a fresh server, then export it again. Prints wall times; asserts nothing.

    python3 bench/import_bench.py [N] [--server build/src/realtimeplot-server]
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import rtplib  # noqa: E402


def main():
    args = sys.argv[1:]
    if "--server" in args:
        i = args.index("--server")
        rtplib.SERVER = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    n = int(args[0]) if args else 10000
    lines = []
    for e in range(n // 100 + 1):
        lines.append(f"[EXPERIMENT];short_id=E{e};human_readable_name=Experiment {e}")
        for p in range(100):
            k = e * 100 + p
            if k >= n:
                break
            lines.append(f"    [PROCESS_VARIABLE];pv_string=E{e}:Machine:PV{p};human_readable_name=PV {k};"
                         f"available_for_mqtt_publish={'True' if k % 2 else 'False'};default_threshold_min={k};default_threshold_max={k + 10}")
    body = ("\n".join(lines) + "\n").encode()
    s = rtplib.Server(verbose=False)
    try:
        s.start()
        token = s.login()
        t0 = time.perf_counter()
        r = s.request("POST", "/file/import", token=token, body=body, timeout=600)
        t1 = time.perf_counter()
        assert r.status == 200, r
        assert r.json["number_of_process_variables_now_in_database"] == n, r.json
        t2 = time.perf_counter()
        r = s.request("GET", "/file/export", token=token, timeout=600)
        t3 = time.perf_counter()
        print(f"import of {n} PV lines ({len(body) / 1e6:.1f} MB): {t1 - t0:.3f} s")
        print(f"export of {n} PVs ({len(r.raw) / 1e6:.1f} MB): {t3 - t2:.3f} s")
        s.stop()
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
