#!/usr/bin/env python3
"""The Live API's cost: N concurrent BidiGenerateContent sessions, each
sending one clientContent turn a second for S seconds, (a) straight to the
stand-in Gemini over TLS (the baseline) and (b) through gemini-looper.

  python3 tests/bench/live.py [--bin ./gemini-looper] [--sessions 200]
      [--seconds 30] [--out build/bench/live.md]

(LIVE_SESSIONS and LIVE_SECONDS in the environment set the defaults.)
make bench runs it as its "live" section (tests/bench/bench.py, on the
stand-in it already started); make bench-live runs it alone.

Per path: the turns answered, and the latency of a turn (from the
clientContent's last byte sent to its turnComplete's arrival) at p50 and
p99; the proxy's row adds "proxy minus direct" at the same percentiles.
Memory per session: the private memory (Private_Clean + Private_Dirty of
/proc/PID/smaps_rollup) of the master and all workers, summed, while the
sessions are open (half-way through), minus the same sum before the first
session, divided by the sessions.  Each session holds one worker, so the
proxy runs a fixed pool of sessions + 20 workers.

The stand-in is Python (a thread per connection): the direct run says how
many sessions it held; when it held fewer than asked, the proxy is
measured with that many, and the report says so.  A proxy that answers
the handshake with anything but 101 gets the row "not measured: proxy
refused (HTTP n)".  The client is asyncio with a minimal RFC 6455 client,
the same for both paths.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(BENCH))
MODEL = "gemini-2.5-flash"
PATH = ("/ws/google.ai.generativelanguage.v1beta.GenerativeService."
        "BidiGenerateContent")
KEYS = ["AIzaSyBenchKeyNumberOne0000000000000001",
        "AIzaSyBenchKeyNumberTwo0000000000000002",
        "AIzaSyBenchKeyNumberThree000000000000003"]
SPARE = 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Refused(Exception):
    def __init__(self, status, body=b""):
        super().__init__("HTTP %s" % status)
        self.status, self.body = status, body


class Closed(Exception):
    pass


# ---------------------------------------------------------------------------
# A minimal WebSocket client on asyncio streams

class WS:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port, tls, key):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls,
            server_hostname="localhost" if tls else None)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wskey = base64.b64encode(os.urandom(16)).decode()
        head = ("GET %s HTTP/1.1\r\nHost: localhost:%d\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                % (PATH, port, wskey))
        if key:
            head += "x-goog-api-key: %s\r\n" % key
        writer.write((head + "\r\n").encode())
        await writer.drain()
        resp = await reader.readuntil(b"\r\n\r\n")
        status = int(resp.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise Refused(status, resp)
        return cls(reader, writer)

    def frame(self, opcode, payload):
        n = len(payload)
        b = bytes([0x80 | opcode])
        if n < 126:
            b += bytes([0x80 | n])
        elif n < 65536:
            b += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            b += bytes([0x80 | 127]) + struct.pack("!Q", n)
        k = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(
            (k * (n // 4 + 1))[:n], "big")).to_bytes(n, "big") if n else b""
        self.w.write(b + k + masked)

    async def send(self, obj):
        self.frame(0x1, json.dumps(obj).encode())
        await self.w.drain()

    async def recv(self):
        """The next data message, JSON-decoded; pings answered."""
        parts = []
        while True:
            b0, b1 = await self.r.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.r.readexactly(8))[0]
            if b1 & 0x80:
                await self.r.readexactly(4)     # servers do not mask
            data = await self.r.readexactly(n)
            op = b0 & 0x0F
            if op == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 \
                    else None
                raise Closed("close %s %s" % (code, data[2:200]))
            if op == 0x9:
                self.frame(0xA, data)
                continue
            if op == 0xA:
                continue
            parts.append(data)
            if b0 & 0x80:
                return json.loads(b"".join(parts))

    async def close(self):
        try:
            self.frame(0x8, struct.pack("!H", 1000))
            await self.w.drain()
            self.w.close()
        except (OSError, ConnectionError):
            pass


def turn(i):
    return {"clientContent": {"turns": [{"role": "user", "parts": [
        {"text": "Turn %d of the bench. STANDIN:chunks=2 "
                 "STANDIN:candidates=20" % i}]}], "turnComplete": True}}


def complete(m):
    return bool((m.get("serverContent") or {}).get("turnComplete"))


# ---------------------------------------------------------------------------
# One run: n sessions on one path

async def one_session(port, tls, key, seconds, start_at, ready, go, out):
    """Open, set up, wait for go, then a turn a second until the time is
    up.  Appends to out["lat"] (ns per turn); counts failures."""
    try:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        ws = await asyncio.wait_for(WS.open(port, tls, key), 60)
        await ws.send({"setup": {"model": "models/" + MODEL,
                                 "generationConfig": {
                                     "responseModalities": ["TEXT"]}}})
        m = await asyncio.wait_for(ws.recv(), 60)
        if "setupComplete" not in m:
            raise Closed("no setupComplete: %r" % m)
    except Refused as e:
        out["refused"] = e.status
        ready()
        return
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            Closed) as e:
        out["failed_open"] += 1
        out["errors"].append(str(e)[:200])
        ready()
        return
    out["open"] += 1
    ready()
    await go.wait()
    # Spread the sessions over the second: no lockstep.
    await asyncio.sleep(random.uniform(0, 1))
    t_end = time.monotonic() + seconds
    i = 0
    ok = True
    try:
        while time.monotonic() < t_end:
            tick = time.monotonic()
            t0 = time.monotonic_ns()
            await ws.send(turn(i))
            while not complete(await asyncio.wait_for(ws.recv(), 30)):
                pass
            out["lat"].append(time.monotonic_ns() - t0)
            i += 1
            await asyncio.sleep(max(0.0, tick + 1.0 - time.monotonic()))
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            Closed) as e:
        ok = False
        out["broken"] += 1
        out["errors"].append(str(e)[:200])
    if ok:
        out["held"] += 1
    await ws.close()


async def run_path(port, tls, key, n, seconds, mem_probe=None):
    """n sessions on one path; returns the counts, latencies and (when
    mem_probe is given) what it returned half-way through the turns."""
    out = {"open": 0, "held": 0, "broken": 0, "failed_open": 0,
           "refused": None, "lat": [], "errors": [], "mem": None}
    go = asyncio.Event()
    left = [n]
    all_ready = asyncio.Event()

    def ready():
        left[0] -= 1
        if left[0] == 0:
            all_ready.set()
    t0 = time.monotonic()
    # Open 50 a second: the stand-in's accept backlog.
    tasks = [asyncio.ensure_future(one_session(
        port, tls, key, seconds, t0 + i / 50.0, ready, go, out))
        for i in range(n)]
    await all_ready.wait()
    go.set()
    if mem_probe is not None and out["open"]:
        await asyncio.sleep(1 + seconds / 2.0)
        out["mem"] = await asyncio.get_running_loop().run_in_executor(
            None, mem_probe)
    await asyncio.gather(*tasks)
    return out


# ---------------------------------------------------------------------------
# The daemon

def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return out


def private_kib(pids):
    tot = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        tot += int(line.split()[1])
        except OSError:
            pass
    return tot


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_looper(binary, tmp, standin_port, workers):
    d = os.path.join(tmp, "looper-live")
    os.makedirs(d, exist_ok=True)
    port = free_port()
    nolimit = {"tpm_limit": None, "tpd_limit": None, "rpm_limit": None,
               "rpd_limit": None}
    cfg = {
        "priority_keys": KEYS[:2], "secondary_keys": KEYS[2:],
        "models": {MODEL: nolimit}, "reset_after": "00:00",
        "timezone": "UTC", "default_model": MODEL,
        "listen": "127.0.0.1:%d" % port,
        "upstream": "https://127.0.0.1:%d" % standin_port,
        "upstream_ca_file": os.path.join(tmp, "ca.pem"),
        "usage_file": os.path.join(d, "key_usage.json"),
        "pidfile": os.path.join(d, "gemini-looper.pid"),
        "log_file": os.path.join(d, "daemon.log"),
        "log_level": "error",
        "workers": workers,
        "upstream_timeout_s": 600, "keepalive_timeout_s": 300,
        "shutdown_timeout_s": 2,
    }
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(path, 0o600)
    p = subprocess.Popen([binary, "-d", "-c", path], cwd=d,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        if p.poll() is not None:
            raise SystemExit("gemini-looper exited with %d" % p.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            if len(children(p.pid)) >= workers:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            p.kill()
            raise SystemExit("gemini-looper: %d workers did not start" %
                             workers)
        time.sleep(0.1)
    return p, port


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def run(binary, tmp, standin_port, sessions, seconds):
    """Both paths against the stand-in on standin_port (its certificate
    from tmp/ca.pem, KEYS known to it).  Returns a dict for report()."""
    tls = ssl.create_default_context(cafile=os.path.join(tmp, "ca.pem"))
    res = {"asked": sessions, "seconds": seconds}
    log("live: %d sessions straight to the stand-in, %d s" %
        (sessions, seconds))
    direct = asyncio.run(run_path(standin_port, tls, KEYS[0], sessions,
                                  seconds))
    res["direct"] = direct
    n = direct["held"] or 0
    log("live: direct: %d open, %d held, %d turns, p50 %.2f ms" % (
        direct["open"], n, len(direct["lat"]), pct(direct["lat"], 50) / 1e6))
    if n == 0:
        res["proxy"] = None
        res["note"] = "the stand-in held no session: %s" % (
            direct["errors"][:3],)
        return res
    res["n"] = n
    workers = n + SPARE
    looper, port = start_looper(binary, tmp, standin_port, workers)
    try:
        pool = lambda: [looper.pid] + children(looper.pid)  # noqa: E731
        idle = private_kib(pool())
        log("live: %d sessions through gemini-looper (%d workers)" %
            (n, workers))
        proxy = asyncio.run(run_path(port, None, None, n, seconds,
                                     lambda: private_kib(pool())))
        proxy["idle_kib"] = idle
        proxy["workers"] = workers
    finally:
        stop(looper)
    res["proxy"] = proxy
    return res


def report(res):
    """The Live row(s), Markdown."""
    L = []
    d, p = res["direct"], res.get("proxy")
    L.append("**Live API** (WebSocket BidiGenerateContent): %d concurrent "
             "sessions, each sending a clientContent turn once a second "
             "for %d s, against the stand-in Gemini (tests/standin, Python, "
             "TLS). *Turn*: from the turn's last byte sent to its "
             "turnComplete's arrival (2 modelTurn chunks, then "
             "generationComplete, then turnComplete). *Added*: the proxy "
             "minus direct at the same percentile. *Memory per session*: "
             "the private memory (KiB) of gemini-looper's master and "
             "workers with the sessions open, minus idle, per session. ms."
             % (res.get("n", res["asked"]), res["seconds"]))
    if res.get("n") and res["n"] < res["asked"]:
        L.append("")
        L.append("The stand-in held only %d of the %d sessions asked for "
                 "(%d failed to open, %d broke off); both paths were "
                 "measured with %d." % (res["n"], res["asked"],
                                        d["failed_open"], d["broken"],
                                        res["n"]))
    L.append("")
    L.append("| path | sessions held | turns | turn p50 / p99 | added p50 / "
             "p99 | memory per session |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    L.append("| direct (https) | %d | %d | %.2f / %.2f | — | — |" % (
        d["held"], len(d["lat"]), pct(d["lat"], 50) / 1e6,
        pct(d["lat"], 99) / 1e6))
    if p is None:
        L.append("| gemini-looper | — | — | — | — | not measured: %s |" %
                 res.get("note", "no baseline"))
    elif p["refused"] is not None and not p["open"]:
        L.append("| gemini-looper | — | — | — | — | not measured: proxy "
                 "refused (HTTP %s) |" % p["refused"])
    else:
        per = "—"
        if p["mem"] is not None and p["open"]:
            per = "%d KiB" % ((p["mem"] - p["idle_kib"]) // p["open"])
        L.append("| gemini-looper (%d workers) | %d | %d | %.2f / %.2f | "
                 "%.2f / %.2f | %s |" % (
                     p["workers"], p["held"], len(p["lat"]),
                     pct(p["lat"], 50) / 1e6, pct(p["lat"], 99) / 1e6,
                     (pct(p["lat"], 50) - pct(d["lat"], 50)) / 1e6,
                     (pct(p["lat"], 99) - pct(d["lat"], 99)) / 1e6, per))
        if p["failed_open"] or p["broken"]:
            L.append("")
            L.append("Through gemini-looper %d sessions failed to open and "
                     "%d broke off (%s)." % (p["failed_open"], p["broken"],
                                             "; ".join(p["errors"][:3])))
    L.append("")
    return "\n".join(L)


def start_standin(tmp):
    with open(os.path.join(tmp, "standin.json"), "w") as f:
        json.dump({"keys": {k: "p%d" % i for i, k in enumerate(KEYS)}}, f)
    p = subprocess.Popen([
        sys.executable, os.path.join(ROOT, "tests", "standin",
                                     "gemini_standin.py"),
        "--cert", os.path.join(tmp, "server.pem"),
        "--key", os.path.join(tmp, "server.key"), "--port", "0",
        "--config", os.path.join(tmp, "standin.json")],
        stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        p.kill()
        raise SystemExit("the stand-in did not start")
    return p, int(line[1])


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SystemExit("%s: not a number" % name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "gemini-looper"))
    ap.add_argument("--sessions", type=int,
                    default=env_int("LIVE_SESSIONS", 200))
    ap.add_argument("--seconds", type=int,
                    default=env_int("LIVE_SECONDS", 30))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "live.md"))
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit("%s: not built" % args.bin)
    tmp = tempfile.mkdtemp(prefix="gl-bench-live-")
    os.chmod(tmp, 0o755)
    standin = None
    try:
        subprocess.run(["sh", os.path.join(ROOT, "tests", "mkca.sh"), tmp],
                       check=True, stdout=subprocess.DEVNULL)
        standin, port = start_standin(tmp)
        text = report(run(os.path.abspath(args.bin), tmp, port,
                          args.sessions, args.seconds))
    finally:
        if standin is not None:
            stop(standin)
        shutil.rmtree(tmp, True)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    log("written to %s" % args.out)


if __name__ == "__main__":
    main()
