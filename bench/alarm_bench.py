#!/usr/bin/env python3
"""The alarm issue's figure: the main loop's request latency while the alerter judges MQTT values.

N subscribed PVs (default 5000) receive values on RTP_MQTT_VALUE_TOPIC_PREFIX at R values/s each
(default 10: 50 000 values/s in all), in band, from --publishers processes; meanwhile wrk measures
GET /auth/users/current at 32 connections. The same wrk run against the same server with no values
is the idle figure. Prints, for each of --rounds paired rounds (idle, then loaded, half a minute
apart at most), req/s and p99 for idle and loaded, their ratio, and the values published and taken;
then the median ratio. Asserts nothing. On the project's 2-core machine the publishers, mosquitto and wrk share the
cores with the server: the loaded figure includes their CPU, not only the server's work.

First, independent of what else the machine runs: the server's CPU time per MQTT value (utime + stime
over --cpu-rounds values of every PV sent as fast as the publishers can).

    python3 bench/alarm_bench.py [--build build] [--pvs 5000] [--rate 10] [--seconds 10] [--publishers 2]
                                 [--cpu-rounds 20] [--cpu-only] [--c-publishers] [--generators-nice N]
                                 [--rounds 3] [--same-rig] [--band-changes 3] [--alarmed N] [--flood N]
                                 [--paced R] [--realtime]

--same-rig (with --c-publishers) keeps the machine equally busy in the idle runs: the same publishers
send the same values through the same broker to a subscriber that only reads them, so that the ratio
is what the server's own work on 50 000 values/s costs the requests, not the generators' CPU on
the shared cores (on a real site the broker and the IOCs run elsewhere).

--band-changes N (default 3; 0: none): then N pairs of loaded runs, the second of each with one
subscription's band changed 1 s into it (PUT /alarms/subscriptions/<pv>). A band change sends every
value to the main loop again until each PV is judged anew (5 000 of them at once): the pair shows
what that costs the requests (p99 and the longest wait) and whether values were dropped meanwhile.

--alarmed N (with --c-publishers; default 0: none): at the end, a loaded run with every PV in band, then N
PVs put out of their MINOR band (warning_max 30 under values of 40-59), and once their alarms are open and
mailed, a loaded run with N PVs in alarm: each of their values goes to the main loop (10 x N per second) and
is judged against its open alarm.

--flood N (with --c-publishers; default 0: none): at the very end, the last N PVs all leave their threshold
band at once (an alarm flood, as after a power cut) while wrk runs: how long until all N alarms are open and
all N mailed, and what the requests saw meanwhile.

--silence (with --c-publishers; runs alone, nothing else is measured): values flow from before the
subscriptions, then every publisher stops at once, as the IOCs do in a power cut; with a monitor interval
of 1 s every PV is INVALID 3 s later. wrk runs from the cut: what the requests saw while 5 000 INVALID
alarms opened, and how long until they all were.

--paced R: wrk paces its 32 connections to R requests/s in all (each connection waits 32/R s after an
answer; wrk's delay() hook) instead of asking as fast as the server answers. A saturating wrk measures the
server's throughput as much as its latency, and on the 2-core machine it takes the CPU that mosquitto and
the publishers need to move 50 000 values/s (paced, the server takes all of them).

--realtime (root; with --paced): wrk and the server's main thread run at SCHED_FIFO 10. On two cores that
the broker, the publishers and paho's reader keep ~95 % busy, a woken thread may wait a scheduler tick
(4 ms) for a core; --realtime leaves that wait out of the latencies of both sides, so that the ratio is the
main loop's own delay under the load. (Either alone does not: both wakeups of a request wait.)

--generators-nice N runs the broker and the publishers at nice N: they stand for the IOCs and the
broker on machines of their own, and take from the server only the CPU it leaves unused. The server
itself runs as always; the values it received in the measured run (rtp_mqtt_received_total) are printed,
so that a run whose generators fell behind is seen for what it is.
"""
import re
import argparse
import multiprocessing
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
import rtplib  # noqa: E402
from http_bench import wrk  # noqa: E402


def publisher(port, pvs, rate, seconds, counter, niceness=0):
    import paho.mqtt.client as mqtt
    os.nice(niceness)
    client = mqtt.Client()
    client.connect("127.0.0.1", port)
    client.loop_start()
    interval = 1.0 / rate
    sent = 0
    end = time.monotonic() + seconds
    next_round = time.monotonic()
    while time.monotonic() < end:
        for i, pv in enumerate(pvs):
            client.publish("bench/values/" + pv.replace(":", "/"), str(40 + (sent + i) % 20), qos=0)
        sent += len(pvs)
        next_round += interval
        delay = next_round - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.loop_stop()
    with counter.get_lock():
        counter.value += sent


def cpu_seconds(pid, task=None):
    """utime + stime of the process (or of one of its threads), in seconds (stat fields 14 and 15)."""
    with open(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(port, pvs, rounds, counter):
    """Publishes `rounds` values of each PV as fast as the client can, then waits for the broker."""
    import paho.mqtt.client as mqtt
    client = mqtt.Client()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for r in range(rounds):
        for i, pv in enumerate(pvs):
            client.publish("bench/values/" + pv.replace(":", "/"), str(40 + (r + i) % 20), qos=0)
    client.publish("bench/done", "1", qos=1).wait_for_publish()
    client.loop_stop()
    with counter.get_lock():
        counter.value += rounds * len(pvs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--pvs", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--c-publishers", action="store_true",
                    help="values from bench/mqtt_flood (C) instead of Python publishers, for the loaded phase")
    ap.add_argument("--cpu-only", action="store_true", help="only the CPU-per-value figure")
    ap.add_argument("--cpu-rounds", type=int, default=20, help="values per PV for the CPU-per-value figure")
    ap.add_argument("--generators-nice", type=int, default=0, help="nice level of the broker and the publishers")
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds of idle and loaded wrk runs")
    ap.add_argument("--band-changes", type=int, default=3,
                    help="pairs of loaded runs without and with a band change 1 s in (0: none)")
    ap.add_argument("--alarmed", type=int, default=0,
                    help="with --c-publishers: a loaded run with this many PVs in alarm, beside one with none")
    ap.add_argument("--flood", type=int, default=0,
                    help="with --c-publishers: at the end, this many PVs leave their band at once (an alarm flood)")
    ap.add_argument("--silence", action="store_true",
                    help="with --c-publishers, alone: every publisher stops at once (a power cut) and every PV becomes "
                         "INVALID 3 monitor intervals later")
    ap.add_argument("--paced", type=float, default=0,
                    help="requests/s in all over the 32 connections (each waits 32/N s after an answer): a paced "
                         "load instead of wrk's as-fast-as-answered (default 0: as fast as answered)")
    ap.add_argument("--realtime", action="store_true",
                    help="(root) wrk and the server's main thread at SCHED_FIFO 10: the wait of their wakeups for "
                         "cores that the generators keep busy is left out of the latencies")
    ap.add_argument("--same-rig", action="store_true",
                    help="with --c-publishers: the idle runs too have the publishers and the broker busy, their values "
                         "going to a subscriber that only reads them (bench/mqtt_flood sink) instead of the server")
    args = ap.parse_args()
    pace_ms = round(32 * 1000 / args.paced) if args.paced else 0
    # rtplib read RTP_SERVER when it was imported: the server of --build is set here (an A/B of two builds
    # ran the default build's server twice before)
    rtplib.SERVER = os.environ.get("RTP_SERVER") or os.path.abspath(os.path.join(HERE, "..", args.build, "src",
                                                                                 "realtimeplot-server"))
    print(f"server: {rtplib.SERVER}")

    broker = rtplib.Mosquitto().start()
    if args.generators_nice:
        os.setpriority(os.PRIO_PROCESS, broker.proc.pid, args.generators_nice)
    try:
        smtp = rtplib.SmtpReceiver().start()
    except BaseException:
        broker.cleanup()  # e.g. a python3 without aiosmtpd (use Debian's /usr/bin/python3)
        raise
    server = rtplib.Server(env={"MQTT_SERVER_URL": f"127.0.0.1:{broker.port}", "RTP_MQTT_VALUE_TOPIC_PREFIX": "bench/values",
                                "RTP_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}", "RTP_SMTP_FROM": "bench@example.org",
                                "RTP_ALARM_SILENCE_INTERVALS": "3" if args.silence else "0",
                                **({"RTP_MONITOR_INTERVAL": "1"} if args.silence else {})},
                         verbose=False)  # --verbose writes a line per request and per value: not what is measured
    try:
        server.start()
        deadline = time.monotonic() + 30
        while "connected to the MQTT broker" not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        admin = server.login()
        if args.realtime:
            # the main thread only (its tid is the pid); threads it starts from now on inherit it
            os.sched_setscheduler(server.proc.pid, os.SCHED_FIFO, os.sched_param(10))
            print("wrk and the server's main thread at SCHED_FIFO 10")
        lines = "[EXPERIMENT];short_id=Bench\n" + "".join(
            f"    [PROCESS_VARIABLE];pv_string=Bench:P{i};experiment_short_id=Bench;available_for_mqtt_publish=False;"
            f"default_threshold_min=0;default_threshold_max=100\n" for i in range(args.pvs))
        r = server.request("POST", "/file/import", token=admin, body=lines.encode(),
                           headers={"Content-Type": "text/plain"})
        print(f"import of {args.pvs} PVs: HTTP {r.status}")
        flood_exe = os.path.join(HERE, "..", args.build, "bench", "mqtt_flood")
        def c_publishers(seconds, prefix="bench/values", first=0, count=None, base=40):
            """bench/mqtt_flood processes sharing PVs first..first+count-1 (default: all), for `seconds`, values
            base..base+19; each prints its count at the end."""
            count = args.pvs - first if count is None else count
            per = (count + args.publishers - 1) // args.publishers
            return [subprocess.Popen([flood_exe, str(broker.port), prefix, str(first + i * per),
                                      str(max(0, min(per, count - i * per))), str(args.rate), str(seconds), str(base)],
                                     stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(args.generators_nice))
                    for i in range(args.publishers) if count - i * per > 0]
        # --silence: values flow before the subscriptions exist, so that no PV is ever silent before the cut
        silence_procs = c_publishers(100000) if args.silence else []
        pvs = [f"Bench:P{i}" for i in range(args.pvs)]
        me = server.request("GET", "/auth/users/current", token=admin).json
        me = me.get("user", me)
        server.request("PUT", "/experiments/Bench", token=admin, json_body={"users_to_add": [me["user_id"]]})
        for pv in pvs:
            r = server.request("POST", f"/email/subscribe/{pv}", token=admin, json_body={"email": "bench@example.org"})
            if r.status != 200:
                sys.exit(f"subscribing {pv}: {r.status} {r.raw}")
        subs = len(server.request("GET", "/email/subscriptions", token=admin).json["subscriptions"])
        print(f"subscriptions: {subs}")
        url = server.url + "auth/users/current"
        headers = {"x-access-tokens": admin}

        def load():
            """One wrk run on GET /auth/users/current at 32 connections, paced and real-time as asked."""
            return wrk(url, 32, args.seconds, headers=headers, delay_ms=pace_ms, realtime=args.realtime)
        if args.silence:
            import glob
            import sqlite3
            # counted in the database file itself (GET /alarms answers at most 1 000, and asking would load
            # the main loop that is measured)
            db = sqlite3.connect("file:" + glob.glob(os.path.join(server.state, "*.db"))[0] + "?mode=ro", uri=True)

            def invalid():
                return db.execute("SELECT COUNT(*) FROM alert_episodes WHERE closed_us IS NULL "
                                  "AND severity = 'INVALID'").fetchone()[0]
            try:
                time.sleep(5)  # every PV heard since its subscription; its first values judged
                before = load()
                result = []
                runner = threading.Thread(target=lambda: result.append(load()))
                t0 = time.monotonic()
                for p in silence_procs:  # the cut: every IOC falls silent at once
                    p.kill()
                    p.communicate()
                runner.start()
                first = took = None
                opened = 0
                while time.monotonic() < t0 + 300 and (took is None or runner.is_alive()):
                    opened = invalid()
                    if opened and first is None:
                        first = time.monotonic() - t0
                    if opened >= args.pvs and took is None:
                        took = time.monotonic() - t0
                    time.sleep(0.1)
                runner.join()
            finally:
                for p in silence_procs:
                    if p.returncode is None:
                        p.kill()
                        p.communicate()
                db.close()
            print()
            print(f"power cut: {args.pvs} PVs silent at once (monitor interval 1 s, INVALID after 3 s): the first INVALID "
                  f"alarm {first if first is not None else float('nan'):.1f} s after the cut, "
                  + (f"all {args.pvs} after {took:.1f} s" if took is not None else f"{opened} after 300 s"))
            print("| wrk run | req/s | p99 ms | longest ms | unanswered in 2 s |")
            print("|---|---|---|---|---|")
            print(f"| values flowing | {before[0]:.0f} | {before[2]:.2f} | {before[4]:.1f} | {before[5]} |")
            print(f"| from the cut, {args.seconds} s | {result[0][0]:.0f} | {result[0][2]:.2f} | {result[0][4]:.1f} | "
                  f"{result[0][5]} |")
            return
        # the server's CPU per value, whatever else runs on the machine: values as fast as the
        # publishers go, no HTTP load; the server's CPU time over the values it was sent
        counter = multiprocessing.Value("q", 0)
        share = [pvs[i::args.publishers] for i in range(args.publishers)]
        procs = [multiprocessing.Process(target=flood, args=(broker.port, part, args.cpu_rounds, counter)) for part in share]
        for p in procs:
            p.start()
        for p in procs:  # the first round fills the caches: it is measured too, and is small beside the rest
            p.join()
        time.sleep(1)
        before = cpu_seconds(server.proc.pid)
        before_main = cpu_seconds(server.proc.pid, server.proc.pid)
        perf = None
        if os.environ.get("RTP_BENCH_PERF"):  # a profile of the measured phase, for perf report
            perf = subprocess.Popen(["perf", "record", "--call-graph", os.environ.get("RTP_BENCH_PERF_GRAPH", "fp"), "-o", os.environ["RTP_BENCH_PERF"], "-p",
                                     str(server.proc.pid)], stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        counter.value = 0
        t0 = time.monotonic()
        procs = [multiprocessing.Process(target=flood, args=(broker.port, part, args.cpu_rounds, counter)) for part in share]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        time.sleep(1)  # what the broker still holds reaches the server
        used = cpu_seconds(server.proc.pid) - before
        used_main = cpu_seconds(server.proc.pid, server.proc.pid) - before_main
        if perf is not None:
            perf.send_signal(2)
            perf.wait()
        print(f"server CPU per MQTT value: {used / counter.value * 1e6:.1f} us, of which the main thread "
              f"{used_main / counter.value * 1e6:.1f} us (the rest is paho's threads reading the broker) "
              f"({counter.value} values in {time.monotonic() - t0 - 1:.1f} s, {used:.2f} s of server CPU)")
        if args.cpu_only:
            return
        def metric(pattern):
            m = re.search(pattern, server.request("GET", "/metrics", token=admin).raw, re.M)
            return float(m.group(1)) if m else 0.0

        def open_alarm_count():
            """Alarms that have not ended, from the database (GET /alarms lists the newest 1 000 at most)."""
            return server.db("SELECT COUNT(*) FROM alert_episodes WHERE closed_us IS NULL")[0][0]

        def received():
            """The value messages the server took so far: queued for the main loop, dropped, settled on arrival."""
            text = server.request("GET", "/metrics", token=admin).raw
            return tuple(float(m.group(1)) if m else 0.0 for m in (
                re.search(r'^rtp_mqtt_received_total\{outcome="%s"\} (\S+)$' % o, text, re.M)
                for o in ("queued", "dropped", "settled")))

        share = [pvs[i::args.publishers] for i in range(args.publishers)]

        def start_values(seconds, prefix="bench/values"):
            """The publishers, for `seconds`; returns a function that waits for them and gives the count."""
            if args.c_publishers:
                cprocs = c_publishers(seconds, prefix)
                return lambda: sum(int(p.communicate()[0].strip() or 0) for p in cprocs)
            counter = multiprocessing.Value("q", 0)
            procs = [multiprocessing.Process(target=publisher, args=(broker.port, part, args.rate, seconds, counter,
                                                                     args.generators_nice))
                     for part in share]
            for p in procs:
                p.start()

            def done():
                for p in procs:
                    p.join()
                return counter.value
            return done

        # paired rounds: wrk with no values, then wrk while the values flow (the VM's speed drifts
        # between minutes; a pair is measured within half a minute)
        rows = []
        cpu_used = []  # per loaded run: CPU seconds per second of the server, its main thread, the broker
        for rnd in range(args.rounds):
            if args.same_rig:
                # the same values through the same broker to a subscriber that only reads them
                sink = subprocess.Popen([flood_exe, str(broker.port), "bench/rig/#", "sink", str(args.seconds + 3)],
                                        stdout=subprocess.PIPE, text=True,
                                        preexec_fn=lambda: os.nice(args.generators_nice))
                rig_done = start_values(args.seconds + 2, prefix="bench/rig")
                time.sleep(1)
            idle = load()
            sunk = rig_sent = 0
            if args.same_rig:
                rig_sent = rig_done()
                sunk = int(sink.communicate()[0].strip() or 0)
            warmup = 5 if rnd == 0 else 2  # the first values of each PV are judged on the main loop
            done = start_values(args.seconds + warmup + 1)
            time.sleep(warmup)
            got = received()
            cpu_before = (cpu_seconds(server.proc.pid), cpu_seconds(server.proc.pid, server.proc.pid),
                          cpu_seconds(broker.proc.pid))
            loaded = load()
            cpu_used.append(tuple((b - a) / args.seconds for a, b in zip(cpu_before, (
                cpu_seconds(server.proc.pid), cpu_seconds(server.proc.pid, server.proc.pid),
                cpu_seconds(broker.proc.pid)))))
            got = tuple(b - a for a, b in zip(got, received()))
            published = done() / (args.seconds + warmup + 1)
            rows.append((idle, loaded, got, published))
            if args.same_rig:
                size = sum(4 + len(f"bench/rig/Bench/P{i}") + 2 for i in range(args.pvs)) / args.pvs
                print(f"round {rnd + 1}: idle run beside {rig_sent / (args.seconds + 2):.0f} values/s published, "
                      f"{sunk / size / (args.seconds + 2):.0f}/s of them read by the sink ({sunk / 1e6:.1f} MB)")
        print("| round | idle req/s | idle p99 ms | loaded req/s | loaded p99 ms | p99 loaded / idle | values/s "
              "published | taken by the server (settled / main loop / dropped) | loaded: CPU of the server's main "
              "thread / its other threads / the broker |")
        print("|---|---|---|---|---|---|---|---|---|")
        for i, ((idle, loaded, got, published), cpu) in enumerate(zip(rows, cpu_used)):
            print(f"| {i + 1} | {idle[0]:.0f} | {idle[2]:.2f} | {loaded[0]:.0f} | {loaded[2]:.2f} | "
                  f"{loaded[2] / idle[2]:.2f}x | {published:.0f} | {(got[0] + got[2]) / args.seconds:.0f} "
                  f"({got[2] / args.seconds:.0f} / {got[0] / args.seconds:.0f} / {got[1] / args.seconds:.0f}) | "
                  f"{cpu[1]:.0%} / {cpu[0] - cpu[1]:.0%} / {cpu[2]:.0%} |")
        ratios = sorted(loaded[2] / idle[2] for idle, loaded, _, _ in rows)
        # a round counts for the figure only when the server took (nearly) every value the
        # publishers sent: with values dropped by the broker it watched less than the load asked for
        counted = sorted(loaded[2] / idle[2] for idle, loaded, got, published in rows
                         if (got[0] + got[2]) / args.seconds >= 0.95 * args.pvs * args.rate)
        changes = []
        for k in range(args.band_changes):
            done = start_values(2 * args.seconds + 5)
            time.sleep(2)
            got = received()
            plain = load()
            between = received()
            answer = []

            def change(k=k):
                time.sleep(1)
                answer.append(server.request("PUT", "/alarms/subscriptions/Bench:P1", token=admin,
                                             json_body={"threshold_max": 99 - k % 2}).status)
            changer = threading.Thread(target=change)
            changer.start()
            changed = load()
            changer.join()
            after = received()
            done()
            changes.append((plain, changed, tuple(b - a for a, b in zip(got, between)),
                            tuple(b - a for a, b in zip(between, after)), answer[0]))
        alarmed = None
        if args.alarmed and args.c_publishers:
            cprocs = c_publishers(100000)  # stopped below, once measured
            try:
                time.sleep(2)

                def measured():
                    before = (received(), cpu_seconds(server.proc.pid, server.proc.pid))
                    run = load()
                    after = (received(), cpu_seconds(server.proc.pid, server.proc.pid))
                    return run, (after[0][0] - before[0][0]) / args.seconds, (after[1] - before[1]) / args.seconds

                plain = measured()
                sent = metric(r'^rtp_alerts_total\{channel="email",outcome="sent"\} (\S+)$')
                t0 = time.monotonic()
                for i in range(args.alarmed):
                    r = server.request("PUT", f"/alarms/subscriptions/Bench:P{i}", token=admin,
                                       json_body={"warning_max": 30})
                    if r.status != 200:
                        sys.exit(f"PUT /alarms/subscriptions/Bench:P{i}: {r.status} {r.raw}")
                deadline = time.monotonic() + 300
                while (metric(r'^rtp_alerts_total\{channel="email",outcome="sent"\} (\S+)$') - sent < args.alarmed
                       and time.monotonic() < deadline):
                    time.sleep(0.5)
                settled_s = time.monotonic() - t0
                time.sleep(3)
                open_alarms = open_alarm_count()
                run_alarmed = measured()
                # no requests: the main thread's CPU per value judged against its open alarm
                before = (received(), cpu_seconds(server.proc.pid, server.proc.pid))
                perf = None
                if os.environ.get("RTP_BENCH_PERF_ALARMED"):  # a profile of the main thread judging them
                    perf = subprocess.Popen(["perf", "record", "--call-graph", os.environ.get("RTP_BENCH_PERF_GRAPH", "fp"),
                                             "-o", os.environ["RTP_BENCH_PERF_ALARMED"], "-t", str(server.proc.pid)],
                                            stderr=subprocess.DEVNULL)
                time.sleep(args.seconds)
                after = (received(), cpu_seconds(server.proc.pid, server.proc.pid))
                if perf is not None:
                    perf.send_signal(2)
                    perf.wait()
                per_value = (after[1] - before[1]) / max(1, after[0][0] - before[0][0])
                alarmed = (plain, run_alarmed, open_alarms, settled_s, per_value)
            finally:
                for p in cprocs:
                    p.kill()
                    p.communicate()
        flooded = None
        if args.flood and args.c_publishers:
            # the last N PVs all leave their threshold band at once (values 140-159 against 0..100): an alarm
            # flood, as after a power cut; measured from the moment their values change
            first = args.pvs - args.flood
            cprocs = c_publishers(100000, count=first)
            fprocs = []
            try:
                time.sleep(3)
                sent = metric(r'^rtp_alerts_total\{channel="email",outcome="sent"\} (\S+)$')
                got = received()
                main_before = cpu_seconds(server.proc.pid, server.proc.pid)
                smtp_before = cpu_seconds(smtp.proc.pid)
                result = []
                runner = threading.Thread(target=lambda: result.append(load()))
                perf = None
                if os.environ.get("RTP_BENCH_PERF_FLOOD"):  # a profile of the server's main thread during the flood
                    perf = subprocess.Popen(["perf", "record", "--call-graph", os.environ.get("RTP_BENCH_PERF_GRAPH", "fp"),
                                             "-o", os.environ["RTP_BENCH_PERF_FLOOD"], "-t", str(server.proc.pid)],
                                            stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                t0 = time.monotonic()
                for p in cprocs:  # the in-band values of those PVs stop; the others go on
                    p.kill()
                    p.communicate()
                cprocs = c_publishers(100000, count=first)
                fprocs = c_publishers(100000, first=first, count=args.flood, base=140)
                runner.start()
                opened_s = mailed_s = None
                deadline = time.monotonic() + 300
                while (opened_s is None or mailed_s is None) and time.monotonic() < deadline:
                    time.sleep(0.25)
                    if opened_s is None and open_alarm_count() >= args.flood:
                        opened_s = time.monotonic() - t0
                    if mailed_s is None and metric(
                            r'^rtp_alerts_total\{channel="email",outcome="sent"\} (\S+)$') - sent >= args.flood:
                        mailed_s = time.monotonic() - t0
                runner.join()
                if perf is not None:
                    perf.send_signal(2)
                    perf.wait()
                main_cpu = (cpu_seconds(server.proc.pid, server.proc.pid) - main_before) / (time.monotonic() - t0)
                smtp_cpu = cpu_seconds(smtp.proc.pid) - smtp_before
                smtp_cpu = (smtp_cpu, len({m["X-Peer"] for m in smtp.messages()}), len(smtp.messages()))
                got = tuple(b - a for a, b in zip(got, received()))
                flooded = (result[0], opened_s, mailed_s, got, main_cpu, time.monotonic() - t0, smtp_cpu)
            finally:
                for p in cprocs + fprocs:
                    p.kill()
                    p.communicate()
        if rows:
            print(f"{args.pvs} PVs x {args.rate:g}/s"
                  + (f" (broker and publishers at nice {args.generators_nice})" if args.generators_nice else "")
                  + (" (idle runs with the same values going to a reading sink)" if args.same_rig else "")
                  + f": median p99 loaded / idle {ratios[len(ratios) // 2]:.2f}x over {len(rows)} paired rounds "
                  f"(the issue asks for at most 1.5x); values the broker did not deliver were dropped by it "
                  f"(QoS 0 to a subscriber that reads too slowly)")
            print(f"rounds in which the server took at least 95 % of the {args.pvs * args.rate:.0f} values/s: "
                  + (f"{len(counted)}, median {counted[len(counted) // 2]:.2f}x" if counted else
                     "none: this run does not show the monitor watching the whole load"))
        if changes:
            print()
            print("| pair | loaded p99 ms | longest ms | with a band change: p99 ms | longest ms | unanswered in 2 s "
                  "| PUT | values to the main loop (without / with) | dropped (without / with) |")
            print("|---|---|---|---|---|---|---|---|---|")
            for i, (plain, changed, got, got_changed, status) in enumerate(changes):
                print(f"| {i + 1} | {plain[2]:.2f} | {plain[4]:.1f} | {changed[2]:.2f} | {changed[4]:.1f} | "
                      f"{plain[5]} / {changed[5]} | {status} | "
                      f"{got[0]:.0f} / {got_changed[0]:.0f} | {got[1]:.0f} / {got_changed[1]:.0f} |")
            print("(a band change sends every value to the main loop until its PV is judged anew; wrk leaves requests "
                  "unanswered within 2 s out of its latencies)")
        if alarmed:
            (plain, to_main, main_cpu), (run, to_main_a, main_cpu_a), open_alarms, settled_s, per_value = alarmed
            print()
            print(f"{args.alarmed} PVs put in alarm: {open_alarms} alarms open, opened and mailed in {settled_s:.1f} s")
            print("| loaded run | req/s | p99 ms | longest ms | values to the main loop /s | main thread CPU |")
            print("|---|---|---|---|---|---|")
            print(f"| every PV in band | {plain[0]:.0f} | {plain[2]:.2f} | {plain[4]:.1f} | {to_main:.0f} | {main_cpu:.0%} |")
            print(f"| {args.alarmed} PVs in alarm | {run[0]:.0f} | {run[2]:.2f} | {run[4]:.1f} | {to_main_a:.0f} | "
                  f"{main_cpu_a:.0%} |")
            print(f"main thread CPU per value judged against its open alarm (no requests): {per_value * 1e6:.1f} us")
        if flooded:
            run, opened_s, mailed_s, got, main_cpu, took, smtp_cpu = flooded
            print()
            print(f"alarm flood: {args.flood} PVs out of band at once; all {args.flood} alarms open after "
                  + (f"{opened_s:.1f} s" if opened_s is not None else "more than 300 s")
                  + ", all mailed after " + (f"{mailed_s:.1f} s" if mailed_s is not None else "more than 300 s")
                  + f" ({smtp_cpu[2]} mails over {smtp_cpu[1]} SMTP connections)")
            print("| during the flood (wrk from its start) | req/s | p99 ms | longest ms | unanswered in 2 s "
                  "| values queued / dropped / settled | main thread CPU | the SMTP receiver's CPU (aiosmtpd, "
                  "on this machine) |")
            print("|---|---|---|---|---|---|---|---|")
            print(f"| {args.seconds} s | {run[0]:.0f} | {run[2]:.2f} | {run[4]:.1f} | {run[5]} | "
                  f"{got[0]:.0f} / {got[1]:.0f} / {got[2]:.0f} | {main_cpu:.0%} (over {took:.0f} s) | "
                  f"{smtp_cpu[0]:.1f} s |")
    finally:
        server.cleanup()
        smtp.cleanup()
        broker.cleanup()


if __name__ == "__main__":
    main()
