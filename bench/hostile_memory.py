#!/usr/bin/env python3
"""Memory under hostile input (issue: hostile input never crashes or starves the server).

Each worst case runs against a fresh server, and the figure is its peak RSS (VmHWM) above the
RSS it had when idle, next to the same figure of the bare SoupServer ceiling (bench/ceiling)
serving a trivial request, so that the allocator's own growth is visible. Prints figures and a
verdict against the issue's bound of 100 MB; asserts nothing.

    python3 bench/hostile_memory.py [--server build/src/realtimeplot-server] [--ceiling build/bench/ceiling]
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import rtplib  # noqa: E402

BOUND_MB = 100


vm = rtplib.vm_mb


def raw(port, head, body=b"", read=True, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(120)
    s.connect(("127.0.0.1", port))
    try:
        s.sendall(head)
        for i in range(0, len(body), 1 << 20):
            s.sendall(body[i:i + (1 << 20)])
        if not read:
            return s
        data = b""
        while True:
            part = s.recv(1 << 16)
            if not part:
                break
            data += part
        return data
    except OSError as e:
        return repr(e).encode()
    finally:
        if read:
            s.close()


def post_head(path, length, token=None, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            + (f"x-access-tokens: {token}\r\n" if token else "") + extra + "\r\n").encode()


class Case:
    def __init__(self, fx, **env):
        self.fx = fx
        base = {"ARCHIVER_URL": fx.url, "ARCHIVER_TIMEZONE": "UTC", "RTP_ARCHIVER_TIMEOUT": "30"}
        base.update(env)
        self.s = rtplib.Server(env=base, verbose=False)
        self.s.start()
        self.token = self.s.login()
        for pv in ["Bench:Hour:Ramp", "Bench:Bomb:Text"]:
            self.s.request("POST", "/experiments/pvs", token=self.token, json_body={"pv_string": pv})
        time.sleep(0.5)
        self.idle = vm(self.s.proc.pid, "VmRSS")

    def finish(self):
        peak = vm(self.s.proc.pid, "VmHWM") - self.idle
        alive = self.s.request("GET", "/auth/users/current", token=self.token).status == 200
        self.s.stop()
        self.s.cleanup()
        return peak, alive


def deep_json(fx):
    c = Case(fx)
    body = ('{"first_name": ' + "[" * 100000 + "]" * 100000 + "}").encode()
    for _ in range(8):
        raw(c.s.port, post_head("/auth/users", len(body), c.token).replace(b"POST", b"PUT").replace(b"/auth/users", b"/auth/users/current"), body)
    return c.finish()


def huge_max_points(fx):
    c = Case(fx)
    body = json.dumps({"since": "2022-01-01T00:00:00Z", "until": "2022-01-12T13:46:39Z", "max_points": 100000}).encode()
    raw(c.s.port, post_head("/data/Bench", len(body), c.token), body)
    body = json.dumps({"since": "2022-01-01T00:00:00Z", "until": "2022-01-12T13:46:39Z", "max_points": 0}).encode()
    raw(c.s.port, post_head("/data/Bench/Bench:Hour:Ramp", len(body), c.token), body)
    return c.finish()


def gzip_bomb(fx):
    c = Case(fx)
    fx.mode("gzip")
    try:
        body = json.dumps({"since": "2022-01-01T00:00:00Z", "until": "2022-01-02T00:00:00Z", "max_points": 0}).encode()
        answer = raw(c.s.port, post_head("/data/Bench/Bench:Bomb:Text", len(body), c.token), body)
        assert b" 502 " in answer.split(b"\r\n")[0], answer[:200]
    finally:
        fx.mode("normal")
    return c.finish()


def non_readers(fx):
    c = Case(fx, RTP_CLIENT_TIMEOUT="3")
    body = json.dumps({"since": "2022-01-01T00:00:00Z", "until": "2022-01-12T13:46:39Z", "max_points": 0}).encode()
    held = [raw(c.s.port, post_head("/data/Bench/Bench:Hour:Ramp", len(body), c.token), body, read=False, rcvbuf=4096)
            for _ in range(16)]
    time.sleep(8)  # past the client timeout: dropped
    for s in held:
        s.close()
    return c.finish()


def anonymous_bodies(fx):
    c = Case(fx)
    body = b"x" * (60 << 20)
    threads = [threading.Thread(target=raw, args=(c.s.port, post_head("/file/import", len(body)), body)) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return c.finish()


def ceiling_growth(ceiling):
    if not os.path.exists(ceiling):
        return None
    p = subprocess.Popen([ceiling, "0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline().strip().rsplit(":", 1)[-1].strip("/"))
        time.sleep(0.3)
        idle = vm(p.pid, "VmRSS")
        for _ in range(200):
            raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return vm(p.pid, "VmHWM") - idle
    except (ValueError, OSError):
        return None
    finally:
        p.terminate()
        p.wait()


def main():
    args = sys.argv[1:]
    if "--server" in args:
        rtplib.SERVER = os.path.abspath(args[args.index("--server") + 1])
    ceiling = os.path.abspath(args[args.index("--ceiling") + 1]) if "--ceiling" in args else \
        os.path.join(os.path.dirname(rtplib.SERVER), "..", "bench", "ceiling")
    fx = rtplib.ArchiverFixture().start()
    start = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())
    fx.pv("Bench:Hour:Ramp", start=start, period=1, count=1000000)
    fx.pv("Bench:Bomb:Text", samples=[[start, 0, "a" * (100 << 20)]])  # 100 MB of text, 0.1 MB gzipped
    cases = [("deep JSON body (100 000 levels) × 8", deep_json),
             ("max_points 100 000 and raw, 1 M points", huge_max_points),
             ("gzip bomb: 100 MB value in a 0.1 MB answer", gzip_bomb),
             ("16 clients that stop reading a raw stream", non_readers),
             ("32 × 60 MB bodies without a token", anonymous_bodies)]
    worst = 0.0
    try:
        base = ceiling_growth(ceiling)
        print(f"{'case':48} {'peak RSS above idle':>20}  server alive")
        if base is not None:
            print(f"{'bare SoupServer ceiling, 200 requests':48} {base:17.1f} MB")
        for name, fn in cases:
            peak, alive = fn(fx)
            worst = max(worst, peak)
            print(f"{name:48} {peak:17.1f} MB  {'yes' if alive else 'NO'}", flush=True)
    finally:
        fx.stop()
    print(f"worst case {worst:.1f} MB: {'within' if worst <= BOUND_MB else 'ABOVE'} the bound of {BOUND_MB} MB")


if __name__ == "__main__":
    main()
