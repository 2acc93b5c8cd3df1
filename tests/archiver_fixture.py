#!/usr/bin/env python3
"""A stand-in for the EPICS Archiver Appliance's retrieval API, for tests and benchmarks.

It serves, on 127.0.0.1 and a port of its own choosing (printed as "Listening on URL"):
  GET /retrieval/data/getData.json?pv=PV&from=ISO&to=ISO   with PV, optimized_N(PV), optimLastSample_N(PV),
      the N-second operators OP_S(PV) (mean, median, min, max, std, count, firstSample, lastSample, firstFill,
      lastFill, linear) and nth_N(PV)
  GET /retrieval/bpl/getMetadata?pv=PV
  GET /retrieval/bpl/getMatchingPVs?pv=GLOB&limit=N   (or regex=REGEX): a JSON array of names
  POST /retrieval/data/getDataForPVs.json?from=ISO&to=ISO&pv=EXPR&pv=EXPR…   the PVs it knows, in the order
      asked, each as in getData.json (an unknown PV is left out)
  POST /retrieval/data/getDataAtTime?at=ISO&includeProxies=true   body: a JSON array of PV names; answer
      {"<pv>": {"secs", "nanos", "val", "severity", "status"}} for the PVs with a sample at or before `at`
in the appliance's documented format: [{"meta": {"name": …}, "data": [{"secs", "nanos", "val",
"severity", "status"}, …]}]. Like the appliance it adds the last sample before `from`, answers
an unknown PV with 404 "Unable to find typeinfo for pv …", answers optimized_N with raw samples
when the window holds at most N and otherwise with about N bins whose val is
[mean, std, min, max, count], and OP_S with one value per S-second bin (bins start at multiples of S
since the epoch, as the appliance's do; linear is given the bin's mean here).

Data is deterministic and set up by the test through control endpoints:
  POST /control/pv    {"name", "start", "period", "count", "kind": "ramp"|"sine"|"string"|"waveform"|"nan"}
                      or {"name", "samples": [[secs, nanos, val(, severity(, status))], …]} (val {"raw": TEXT} is
                      written as TEXT; severity is the EPICS alarm severity, 0 NO_ALARM … 3 INVALID, default 0;
                      status the alarm status, default 3 (UDF) with INVALID and 0 otherwise)
                      optional "meta": {"EGU": …, "PREC": …, "DESC": …} for getMetadata and the answers' meta
  POST /control/missing {"paths": ["/retrieval/data/getDataAtTime", …]}   those endpoints answer 404, as on an
                      appliance too old to have them
  POST /control/mode  {"mode": "normal"|"slow"|"broken"|"garbage"|"hold"|"empty_unknown"|"gzip", "delay": s}
                      (gzip: answers with Content-Encoding: gzip, as an appliance behind a compressing proxy)
  POST /control/release   lets held answers go
  GET  /control/requests  the request paths seen so far
"""
import json
import math
import sys
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PVS = {}
MODE = {"mode": "normal", "delay": 0}
MISSING = set()
META = {}
RELEASE = threading.Event()
REQUESTS = []
LOCK = threading.Lock()
CHUNK = 20000


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Param:
    """A PV whose i-th sample is at start + i*period."""

    def __init__(self, spec):
        self.start = float(spec.get("start", 0))
        self.period = float(spec.get("period", 1))
        self.count = int(spec.get("count", 0))
        self.kind = spec.get("kind", "ramp")

    def value(self, i):
        if self.kind == "sine":
            return math.sin(i / 10.0)
        if self.kind == "string":
            return f"state {i % 3}"
        if self.kind == "waveform":
            return [i, i + 1, i + 2]
        if self.kind == "bigwave":
            return list(range(i, i + 20000))
        if self.kind == "nan":
            return float("nan") if i % 2 else float(i)
        return float(i)

    def time(self, i):
        t = self.start + i * self.period
        secs = math.floor(t)
        return secs, int(round((t - secs) * 1e9))

    def index_range(self, t0, t1):
        """Indices in [t0, t1], plus the last one before t0."""
        if self.count == 0:
            return 0, -1
        lo = max(0, math.ceil((t0 - self.start) / self.period - 1e-9))
        hi = min(self.count - 1, math.floor((t1 - self.start) / self.period + 1e-9))
        if lo > 0 and lo <= self.count:
            lo -= 1
        return lo, hi

    def samples(self, t0, t1):
        lo, hi = self.index_range(t0, t1)
        for i in range(lo, hi + 1):
            s, n = self.time(i)
            yield s, n, self.value(i)

    def window_count(self, t0, t1):
        lo, hi = self.index_range(t0, t1)
        return max(0, hi - lo + 1)


class Explicit:
    def __init__(self, spec):
        self.list = sorted((int(x[0]), int(x[1]), x[2]) for x in spec["samples"])
        self.severity = {(int(x[0]), int(x[1])): int(x[3]) for x in spec["samples"] if len(x) > 3}
        self.status = {(int(x[0]), int(x[1])): int(x[4]) for x in spec["samples"] if len(x) > 4}

    def samples(self, t0, t1):
        before = None
        for s, n, v in self.list:
            t = s + n / 1e9
            if t < t0:
                before = (s, n, v)
            elif t <= t1:
                if before is not None:
                    yield before
                    before = None
                yield s, n, v
        if before is not None:
            yield before

    def window_count(self, t0, t1):
        return sum(1 for _ in self.samples(t0, t1))


def sample_json(s, n, v, severity=0, status=None):
    if isinstance(v, float) and math.isnan(v):
        val = "NaN"  # what the appliance writes for NaN
    elif isinstance(v, dict) and "raw" in v:
        val = v["raw"]  # the test's own JSON text, as a hostile or broken appliance would write it
    else:
        val = json.dumps(v)
    # the appliance writes status 3 (UDF) or the record's alarm status with an INVALID severity
    if status is None:
        status = 3 if severity == 3 else 0
    return f'{{"secs": {s}, "nanos": {n}, "val": {val}, "severity": {severity}, "status": {status}}}'


def bins(source, t0, t1, nbins):
    width = (t1 - t0) / nbins
    buckets = [[] for _ in range(nbins)]
    for s, n, v in source.samples(t0, t1):
        t = s + n / 1e9
        k = min(nbins - 1, max(0, int((t - t0) / width)))
        buckets[k].append(float(v))
    for k, b in enumerate(buckets):
        if not b:
            continue
        mean = sum(b) / len(b)
        std = math.sqrt(sum((x - mean) ** 2 for x in b) / len(b))
        start = t0 + k * width
        yield math.floor(start), 0, [mean, std, min(b), max(b), len(b)]


def reduce_bin(op, values):
    if op in ("mean", "linear"):
        return sum(values) / len(values)
    if op == "median":
        v = sorted(values)
        k = len(v) // 2
        return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2
    if op == "min":
        return min(values)
    if op == "max":
        return max(values)
    if op == "std":
        mean = sum(values) / len(values)
        return math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
    if op == "count":
        return float(len(values))
    if op in ("firstSample", "firstFill"):
        return values[0]
    return values[-1]  # lastSample, lastFill


BIN_OPS = ("mean", "median", "min", "max", "std", "count", "firstSample", "lastSample", "firstFill", "lastFill", "linear")


def second_bins(source, op, width, t0, t1):
    """One value per `width`-second bin, bins starting at multiples of `width` since the epoch."""
    buckets = {}
    for s, n, v in source.samples(t0, t1):
        t = s + n / 1e9
        if t < t0:
            continue
        buckets.setdefault(int(t // width), []).append(float(v))
    last = None
    for k in range(int(t0 // width), int(t1 // width) + 1):
        if k in buckets:
            last = reduce_bin(op, buckets[k])
            yield k * width, 0, last
        elif op in ("firstFill", "lastFill") and last is not None:
            yield k * width, 0, last


def sample_at(source, t):
    found = None
    for s, n, v in source.samples(t, t):
        if s + n / 1e9 <= t:
            found = (s, n, v)
    return found


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/retrieval/"):
            with LOCK:
                REQUESTS.append(self.path)
                if body != {}:
                    REQUESTS.append("body: " + json.dumps(body))
            if url.path in MISSING or url.path not in ("/retrieval/data/getDataAtTime",
                                                       "/retrieval/data/getDataForPVs.json"):
                return self.send(404, "not found", "text/plain")
            if url.path == "/retrieval/data/getDataForPVs.json":
                if self.apply_mode():
                    return
                return self.get_data_for_pvs(urllib.parse.parse_qs(url.query))
            if MODE["mode"] == "garbage":
                return self.send(200, '{"X:Y": {"secs": 1, "nanos": 0, "val": 1.0}, "X:Z": {"secs":')
            at = parse_time(urllib.parse.parse_qs(url.query)["at"][0])
            answer = {}
            for name in body:
                source = PVS.get(name)
                found = sample_at(source, at) if source is not None else None
                if found is not None:
                    s, n, v = found
                    severity = getattr(source, "severity", {}).get((s, n), 0)
                    status = getattr(source, "status", {}).get((s, n))
                    answer[name] = json.loads(sample_json(s, n, v, severity, status))
            return self.send(200, json.dumps(answer))
        if self.path == "/control/pv":
            with LOCK:
                PVS[body["name"]] = Explicit(body) if "samples" in body else Param(body)
                META[body["name"]] = body.get("meta", {})
        elif self.path == "/control/missing":
            MISSING.clear()
            MISSING.update(body.get("paths", []))
        elif self.path == "/control/mode":
            MODE.update(body)
            RELEASE.clear()
        elif self.path == "/control/release":
            RELEASE.set()
        else:
            return self.send(404, "no such control")
        self.send(200, "{}")

    def apply_mode(self):
        """The fault modes; True when the answer was given (or refused) here."""
        mode = MODE["mode"]
        if mode == "hold":
            RELEASE.wait(60)
        elif mode == "slow":
            time.sleep(float(MODE.get("delay", 5)))
        elif mode == "broken":
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return True
        elif mode == "garbage":
            self.send(200, '[{"meta": {"name": "x"}, "data": [{"secs": 1, "nanos": 0, "val": 1.0}, {"secs":')
            return True
        return False

    def select(self, expr, t0, t1):
        """(name, samples, severity, status) of a PV expression; None for an unknown PV; a str for a bad one."""
        op, arg, name = None, None, expr
        if expr.endswith(")") and "(" in expr:
            opname, name = expr[:-1].split("(", 1)
            opbase, _, n = opname.rpartition("_")
            if opbase in ("optimized", "optimLastSample", "nth") + BIN_OPS and n.isdigit():
                op, arg = opbase, int(n)
            else:
                return f"Unknown post processor {opname}"
        source = PVS.get(name)
        if source is None:
            return None
        if op in ("optimized", "optimLastSample") and source.window_count(t0, t1) > arg:
            return name, bins(source, t0, t1, arg), None, None
        if op in BIN_OPS:
            return name, second_bins(source, op, arg, t0, t1), None, None
        if op == "nth":
            return name, (x for i, x in enumerate(source.samples(t0, t1)) if i % arg == 0), None, None
        return name, source.samples(t0, t1), getattr(source, "severity", None), getattr(source, "status", None)

    def get_data_for_pvs(self, q):
        """POST getDataForPVs.json?from=&to=&pv=…&pv=…: the PVs the appliance knows, in the order asked."""
        t0 = parse_time(q["from"][0])
        t1 = parse_time(q["to"][0])
        selected = [self.select(expr, t0, t1) for expr in q.get("pv", [])]
        bad = [x for x in selected if isinstance(x, str)]
        if bad:
            return self.send(400, bad[0], "text/plain")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[")
        first = True
        for x in selected:
            if x is None:
                continue
            if not first:
                self.wfile.write(b", ")
            first = False
            self.write_pv(self.wfile, *x, META.get(x[0], {}))
        self.wfile.write(b"]")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/control/requests":
            with LOCK:
                return self.send(200, json.dumps({"requests": REQUESTS}))
        with LOCK:
            REQUESTS.append(self.path)
        mode = MODE["mode"]
        if self.apply_mode():
            return
        expr = q.get("pv", [""])[0]
        if url.path in MISSING:
            return self.send(404, "not found", "text/plain")
        if url.path == "/retrieval/bpl/getMetadata":
            if expr in PVS:
                meta = {"name": expr, "DBRType": "DBR_SCALAR_DOUBLE", "paused": "false"}
                meta.update(META.get(expr, {}))
                return self.send(200, json.dumps(meta))
            return self.send(404, f"Unable to find typeinfo for pv {expr}", "text/plain")
        if url.path == "/retrieval/bpl/getMatchingPVs":
            import fnmatch
            import re
            limit = int(q.get("limit", ["500"])[0])
            if "regex" in q:
                names = [p for p in sorted(PVS) if re.fullmatch(q["regex"][0], p)]
            else:
                names = [p for p in sorted(PVS) if fnmatch.fnmatchcase(p, q.get("pv", ["*"])[0])]
            return self.send(200, json.dumps(names if limit < 0 else names[:limit]))
        if url.path != "/retrieval/data/getData.json":
            return self.send(404, "not found", "text/plain")
        t0 = parse_time(q["from"][0])
        t1 = parse_time(q["to"][0])
        selected = self.select(expr, t0, t1)
        if isinstance(selected, str):
            return self.send(400, selected, "text/plain")
        if selected is None:
            name = expr[:-1].split("(", 1)[1] if expr.endswith(")") and "(" in expr else expr
            if mode == "empty_unknown":
                return self.send(200, "[]")
            return self.send(404, f"Unable to find typeinfo for pv {name}", "text/plain")
        out = self.wfile
        if mode == "gzip":
            import gzip
            import io
            out = io.BytesIO()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
        out.write(b"[")
        self.write_pv(out, *selected, META.get(selected[0], {}))
        out.write(b"]")
        if mode == "gzip":
            data = gzip.compress(out.getvalue(), 9)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def write_pv(self, out, name, samples, severity=None, status=None, meta=None):
        """One PV of an answer: {"meta": {"name", …}, "data": [samples]}."""
        severity = severity or {}
        status = status or {}
        head = {"name": name, "PREC": "0"}
        head.update(meta or {})
        out.write(f'{{"meta": {json.dumps(head)}, "data": ['.encode())
        first = True
        buf = []
        for s, n, v in samples:
            buf.append(sample_json(s, n, v, severity.get((s, n), 0), status.get((s, n))))
            if len(buf) >= CHUNK:
                out.write(((", " if not first else "") + ", ".join(buf)).encode())
                first = False
                buf = []
        if buf:
            out.write(((", " if not first else "") + ", ".join(buf)).encode())
        out.write(b"] }")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's default of 5 drops simultaneous connects (a 1 s SYN retry)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that went away is no error


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"Listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
