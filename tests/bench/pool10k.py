#!/usr/bin/env python3
"""The pool at scale (issue 12): two builds of gemini-looper side by side
with 10,000 keys in 1,000 projects and 10 models.

  python3 tests/bench/pool10k.py --old BIN --new BIN [--plain-keys]
      [--keys 10000] [--per-project 10] [--models 10] [--rounds 3]
      [--requests 40] [--workers 2] [--probe-seconds 20] [--out FILE]

For each build, taking turns (old, new, new, old, ...) so that a burst of
other work on the machine spoils a round of each rather than one build,
a daemon starts against the stand-in Gemini (tests/standin, real TLS)
with the keys as {"key", "project"} objects (CONTRACT.md, "Keys as
objects"), or as plain strings for a build that does not take objects
(--plain-keys: the old one; a build whose -t refuses objects falls back to
strings by itself, and the report says so).  Measured, medians of the
rounds:

  start         from exec to the first 200 of /healthz, and of a proxied
                generateContent
  reload        SIGHUP with the config unchanged, then with 10 % of the
                keys replaced: until /api/status_data's last_reload.time
                changes (polled; its own latency bounds the resolution),
                and until the master logs "reloaded:"
  status_data   p50 / p99 of --requests GETs on one kept-alive connection,
                and the body's size
  metrics       the same for /metrics
  memory        PSS (/proc/PID/smaps_rollup) of the master, and of the
                largest worker after serving the above
  shm           the segment's size, from the master's "shared memory:" line

and, for a build that takes key_probe (its -t does not call it unknown),
the probe calls a second the stand-in sees once every key is invalid
(on average, and in the busiest whole second)
(keys the stand-in does not know; marked by requests with max_attempts
64), over --probe-seconds.  The report goes to stdout, and as Markdown to
--out.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "it"))

import lib  # noqa: E402
from standin import StandIn, ca_file  # noqa: E402

BODY = json.dumps({"contents": [{"role": "user", "parts": [
    {"text": "hello from pool10k"}]}]}).encode()


def key_of(i, gen=0):
    """A 39-character key in Google's classic shape, distinct per (i, gen)."""
    return "AIzaSyPool10k%01dKey%021d" % (gen, i)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Pool:
    """The keys, projects and models of one configuration."""

    def __init__(self, nkeys, per_project, nmodels):
        self.nkeys, self.per_project = nkeys, per_project
        self.models = ["gemini-bench-%02d" % i for i in range(nmodels)]
        self.gen = [0] * nkeys     # which generation of key i is in use

    def project(self, i):
        return "proj-%05d" % (i // self.per_project)

    def key(self, i):
        return key_of(i, self.gen[i])

    def replace_tenth(self):
        """10 % of the keys replaced by new ones (same projects)."""
        for i in range(0, self.nkeys, 10):
            self.gen[i] += 1

    def entries(self, objects):
        out = []
        for i in range(self.nkeys):
            if objects:
                out.append({"key": self.key(i), "project": self.project(i),
                            "label": "bench key %d" % i})
            else:
                out.append(self.key(i))
        return out

    def standin_keys(self, gens=2):
        return {key_of(i, g): {"project": self.project(i)}
                for i in range(self.nkeys) for g in range(gens)}


class Run:
    """One daemon of one build, in a directory of its own."""

    def __init__(self, binary, pool, objects, upstream_port, args,
                 extra=None):
        self.bin, self.pool, self.objects = binary, pool, objects
        self.dir = tempfile.mkdtemp(prefix="gl-pool10k-")
        self.port = free_port()
        self.cfgpath = os.path.join(self.dir, "config.json")
        self.logpath = os.path.join(self.dir, "daemon.log")
        self.proc = None
        half = pool.nkeys // 2
        self.cfg = {
            "models": {m: {"tpm_limit": 1000000, "tpd_limit": None,
                           "rpm_limit": 1000, "rpd_limit": None}
                       for m in pool.models},
            "default_model": pool.models[0],
            "timezone": "UTC",
            "reset_after": "00:00",
            "listen": "127.0.0.1:%d" % self.port,
            "upstream": "https://localhost:%d" % upstream_port,
            "upstream_ca_file": ca_file(),
            "workers": args.workers,
            "log_level": "info",
            "usage_file": "key_usage.json",
            "pidfile": "gemini-looper.pid",
        }
        self.cfg.update(extra or {})
        self.half = half
        self.write()

    def write(self):
        keys = self.pool.entries(self.objects)
        self.cfg["priority_keys"] = keys[:self.half]
        self.cfg["secondary_keys"] = keys[self.half:]
        tmp = self.cfgpath + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.cfg, f)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.cfgpath)

    def check(self):
        """-t: (ok, its output)."""
        r = subprocess.run([self.bin, "-t", "-c", self.cfgpath],
                           capture_output=True, text=True, timeout=120)
        return r.returncode == 0, r.stdout + r.stderr

    def start(self):
        """Start in the foreground; returns (s to /healthz 200, s to the
        first proxied 200)."""
        self.err = open(self.logpath, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([self.bin, "-d", "-c", self.cfgpath],
                                     cwd=self.dir, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        t_health = self.until_200("GET", "/healthz", None, t0)
        t_gen = self.until_200("POST", "/v1beta/models/%s:generateContent" %
                               self.pool.models[0], BODY, t0)
        return t_health, t_gen

    def until_200(self, method, path, body, t0, limit=300):
        while time.monotonic() - t0 < limit:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited: %s" % (self.bin,
                                                    self.log()[-2000:]))
            try:
                st, _ = self.get(method, path, body, timeout=30)
                if st == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit("%s: no 200 on %s within %d s" % (self.bin, path,
                                                            limit))

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def get(self, method, path, body=None, timeout=60, c=None):
        own = c is None
        c = c or self.conn(timeout)
        try:
            c.request(method, path, body=body,
                      headers={"Content-Type": "application/json"}
                      if body else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            if own:
                c.close()

    def latency(self, path, n):
        """p50, p99 (ms) of n GETs on one kept-alive connection, and the
        body's size."""
        c = self.conn()
        times, size = [], 0
        try:
            for _ in range(n):
                t = time.monotonic()
                st, data = self.get("GET", path, c=c)
                times.append((time.monotonic() - t) * 1000)
                if st != 200:
                    raise SystemExit("%s %s: %d" % (self.bin, path, st))
                size = len(data)
        finally:
            c.close()
        times.sort()
        p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
        return statistics.median(times), p99, size

    def last_reload(self):
        st, data = self.get("GET", "/api/status_data")
        if st != 200:
            return None
        lr = json.loads(data).get("last_reload") or {}
        return lr.get("time"), lr.get("ok")

    def reload(self):
        """SIGHUP: (s until status_data shows it, s until the log says so)."""
        before = self.last_reload()
        nlog = self.log().count("reloaded:")
        t0 = time.monotonic()
        t_log = None
        self.proc.send_signal(signal.SIGHUP)
        while time.monotonic() - t0 < 300:
            if t_log is None and self.log().count("reloaded:") > nlog:
                t_log = time.monotonic() - t0
            try:
                now = self.last_reload()
            except (OSError, ValueError):
                now = None
            if now is not None and now != before and now[1]:
                t_sd = time.monotonic() - t0
                while t_log is None and time.monotonic() - t0 < 300:
                    if self.log().count("reloaded:") > nlog:
                        t_log = time.monotonic() - t0
                    time.sleep(0.002)
                return t_sd, t_log
            if "reload failed" in self.log():
                raise SystemExit("%s: reload failed: %s" % (
                    self.bin, self.log()[-1500:]))
            time.sleep(0.002)
        raise SystemExit("%s: the reload did not show" % self.bin)

    def memory(self):
        """PSS KiB: the master's, the largest worker's."""
        kids = [pss_kib(p) for p in children(self.proc.pid)]
        kids = [k for k in kids if k is not None]
        return pss_kib(self.proc.pid), max(kids) if kids else None

    def shm_bytes(self):
        last = None
        for line in self.log().splitlines():
            if "shared memory: " in line and " bytes for " in line:
                last = int(line.split("shared memory: ")[1].split()[0])
        return last

    def log(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, True)


def objects_for(binary, pool, port, args, want):
    """Keys as objects if wanted and the build takes them; whether the
    build knows key_probe."""
    r = Run(binary, pool, want, port, args,
            {"key_probe": {"first_s": 5, "max_s": 60}})
    try:
        ok, out = r.check()
        objects = want
        if not ok and want:
            r.objects = objects = False
            r.write()
            ok, out = r.check()
        if not ok:
            raise SystemExit("%s -t: %s" % (binary, out[-1000:]))
        return objects, "key_probe: unknown field" not in out
    finally:
        r.stop()


def measure(binary, pool, objects, si, args):
    """One round of one build: a dict of figures."""
    pool.gen = [0] * pool.nkeys
    r = Run(binary, pool, objects, si.port, args)
    f = {}
    try:
        f["start_healthz_s"], f["start_first_200_s"] = r.start()
        # Warm: each worker has served status_data and metrics once.
        r.latency("/api/status_data", 2)
        f["status_p50_ms"], f["status_p99_ms"], f["status_bytes"] = \
            r.latency("/api/status_data", args.requests)
        f["metrics_p50_ms"], f["metrics_p99_ms"], f["metrics_bytes"] = \
            r.latency("/metrics", args.requests)
        f["master_pss_kib"], f["worker_pss_kib"] = r.memory()
        f["shm_bytes"] = r.shm_bytes()
        f["reload_same_s"], f["reload_same_log_s"] = r.reload()
        pool.replace_tenth()
        r.write()
        f["reload_10pct_s"], f["reload_10pct_log_s"] = r.reload()
        r.until_200("POST", "/v1beta/models/%s:generateContent" %
                    pool.models[1], BODY, time.monotonic())
        f["after_reload_master_pss_kib"], _ = r.memory()
    finally:
        r.stop()
    return f


def probe_rate(binary, pool, objects, args):
    """Probe calls a second the stand-in saw with every key invalid."""
    si = StandIn({"keys": {}})
    r = Run(binary, pool, objects, si.port, args,
            {"key_probe": {"first_s": 5, "max_s": 3600},
             "max_attempts": 64})
    try:
        r.err = open(r.logpath, "w")
        r.proc = subprocess.Popen([r.bin, "-d", "-c", r.cfgpath], cwd=r.dir,
                                  stdout=subprocess.DEVNULL, stderr=r.err)
        r.until_200("GET", "/healthz", None, time.monotonic())
        path = "/v1beta/models/%s:generateContent" % pool.models[0]
        done = threading.Event()
        t0 = time.monotonic()

        def mark():
            while not done.is_set() and time.monotonic() - t0 < 600:
                try:
                    st, _ = r.get("POST", path, BODY, timeout=120)
                except OSError:
                    continue
                if st == 503:
                    done.set()
        threads = [threading.Thread(target=mark) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not done.is_set():
            return None
        seq = si.last_seq()
        time.sleep(args.probe_seconds)
        probes = [e for e in si.log(seq) if e.get("method") == "GET" and
                  "/models" in (e.get("path") or "")]
        per_sec = {}
        for e in probes:
            per_sec[int(e["time"])] = per_sec.get(int(e["time"]), 0) + 1
        return (len(probes) / float(args.probe_seconds),
                max(per_sec.values()) if per_sec else 0)
    finally:
        r.stop()
        si.stop()


ROWS = [
    ("start: exec to /healthz 200 (s)", "start_healthz_s", "%.3f"),
    ("start: exec to first proxied 200 (s)", "start_first_200_s", "%.3f"),
    ("SIGHUP, config unchanged: status_data shows it (s)", "reload_same_s",
     "%.3f"),
    ("SIGHUP, config unchanged: master logs it (s)", "reload_same_log_s",
     "%.3f"),
    ("SIGHUP, 10 % of keys replaced: status_data shows it (s)",
     "reload_10pct_s", "%.3f"),
    ("SIGHUP, 10 % of keys replaced: master logs it (s)",
     "reload_10pct_log_s", "%.3f"),
    ("/api/status_data p50 (ms)", "status_p50_ms", "%.1f"),
    ("/api/status_data p99 (ms)", "status_p99_ms", "%.1f"),
    ("/api/status_data body (bytes)", "status_bytes", "%d"),
    ("/metrics p50 (ms)", "metrics_p50_ms", "%.1f"),
    ("/metrics p99 (ms)", "metrics_p99_ms", "%.1f"),
    ("/metrics body (bytes)", "metrics_bytes", "%d"),
    ("master PSS (KiB)", "master_pss_kib", "%d"),
    ("master PSS after the reloads (KiB)", "after_reload_master_pss_kib",
     "%d"),
    ("largest worker PSS (KiB)", "worker_pss_kib", "%d"),
    ("shared memory segment (bytes)", "shm_bytes", "%d"),
    ("probe calls a second, every key invalid", "probe_per_s", "%.1f"),
    ("probe calls in the busiest whole second", "probe_max_s", "%d"),
]


def med(rounds, k):
    v = [r[k] for r in rounds if r.get(k) is not None]
    return statistics.median(v) if v else None


def report(args, res, notes):
    out = []
    out.append("pool10k: %d keys in %d projects, %d models, %d rounds, "
               "%d workers; %s; load average %s" % (
                   args.keys, args.keys // args.per_project, args.models,
                   args.rounds, args.workers,
                   time.strftime("%Y-%m-%d", time.gmtime()),
                   " ".join("%.1f" % x for x in os.getloadavg())))
    out.append("old: %s (%s)" % (args.old, notes["old"]))
    out.append("new: %s (%s)" % (args.new, notes["new"]))
    out.append("")
    out.append("| figure (median of rounds) | old | new | new / old |")
    out.append("| --- | ---: | ---: | ---: |")
    for label, k, fmt in ROWS:
        a, b = med(res["old"], k), med(res["new"], k)
        if a is None and b is None:
            continue
        ratio = "%.2f" % (b / a) if a and b is not None else "—"
        out.append("| %s | %s | %s | %s |" % (
            label, fmt % a if a is not None else "—",
            fmt % b if b is not None else "—", ratio))
    text = "\n".join(out)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--plain-keys", action="store_true",
                    help="the old build gets the keys as plain strings")
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--per-project", type=int, default=10)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--probe-seconds", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "pool10k.md"))
    args = ap.parse_args()
    pool = Pool(args.keys, args.per_project, args.models)
    si = StandIn({"keys": pool.standin_keys()})
    bins = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    kind, probes, notes = {}, {}, {}
    try:
        for which, b in bins.items():
            want = not (which == "old" and args.plain_keys)
            kind[which], probes[which] = objects_for(b, pool, si.port, args,
                                                     want)
            notes[which] = "keys as %s%s; key_probe %s" % (
                "objects" if kind[which] else "strings",
                "" if kind[which] == want else " (objects refused)",
                "taken" if probes[which] else "unknown")
        res = {"old": [], "new": []}
        order = ["old", "new"]
        for i in range(args.rounds):
            for which in (order if i % 2 == 0 else order[::-1]):
                f = measure(bins[which], pool, kind[which], si, args)
                print("round %d %s: %s" % (i + 1, which, json.dumps(f)),
                      flush=True)
                res[which].append(f)
        for which in order:
            if probes[which]:
                rate = probe_rate(bins[which], pool, kind[which], args)
                if rate is not None:
                    res[which][0]["probe_per_s"] = rate[0]
                    res[which][0]["probe_max_s"] = rate[1]
        report(args, res, notes)
    finally:
        si.stop()
        lib.cleanup()


if __name__ == "__main__":
    main()
