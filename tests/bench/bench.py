#!/usr/bin/env python3
"""make bench: gemini-looper against nginx, on this machine, in one run.

  python3 tests/bench/bench.py [--bin ./gemini-looper] [--out FILE]
      [--duration 9] [--conns 1,8,32,64] [--stream-seconds 40]
      [--mem-streams 500] [--live-sessions 200] [--live-seconds 30]
      [--skip throughput,stream,live,memory]

What it measures (see README.md, "Performance"):

  throughput  wrk (2 threads, --latency, tests/bench/post.lua: a
              generateContent POST) at each concurrency level against
              (a) the upstream straight over https, (b) nginx as a reverse
              proxy (upstream keepalive, proxy_ssl_session_reuse, verify on),
              (c) gemini-looper (log_level error; one more level with the
              access log on, for both).  The upstream is a second nginx
              answering a canned ~1 KB generateContent JSON over TLS with
              keep-alive.  Each cell is 3 rounds taking turns between the
              paths (medians reported), so that a burst of other work on
              the machine spoils a round of each rather than one path; CPU
              per request is the servers' own (/proc/PID/schedstat).
  stream      a small TLS SSE upstream (below) stamps each event with
              CLOCK_MONOTONIC when it sends it; a client measures, straight
              and through each proxy, the first event's delay after the
              request went out and each event's transit (arrival - stamp).
              The stamps make the proxy's own delay visible under the
              upstream's jitter.
  live        N Live API sessions (WebSocket BidiGenerateContent), each a
              turn a second, straight to the stand-in and through
              gemini-looper: the latency a turn gains, the memory a session
              costs (tests/bench/live.py, also alone as make bench-live;
              LIVE_SESSIONS and LIVE_SECONDS in the environment set N and
              the duration).
  memory      PSS and private memory (/proc/PID/smaps_rollup) of the
              master, idle workers, and the whole pool holding N slow
              streams against the stand-in Gemini (tests/standin), and
              nginx holding the same streams.

Everything listens on 127.0.0.1 in a private temporary directory and is
stopped at the end.  The report goes to stdout and to --out as Markdown.
"""
import argparse
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live as livebench  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BENCH = os.path.dirname(os.path.abspath(__file__))
MODEL = "gemini-2.5-flash"
GEN_PATH = "/v1beta/models/%s:generateContent" % MODEL
SSE_PATH = "/v1beta/models/%s:streamGenerateContent?alt=sse" % MODEL
KEYS = ["AIzaSyBenchKeyNumberOne0000000000000001",
        "AIzaSyBenchKeyNumberTwo0000000000000002",
        "AIzaSyBenchKeyNumberThree000000000000003"]
PROCS = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("%s exited with %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("%s did not come up on port %d" % (what, port))


def start(argv, what, **kw):
    p = subprocess.Popen(argv, **kw)
    PROCS.append((p, what))
    return p


def stop(p, timeout=20):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    while PROCS:
        p, _ = PROCS.pop()
        try:
            stop(p)
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------
# The canned answer and the nginx set-ups

def canned_answer():
    """A generateContent answer as Gemini sends it (pretty-printed), ~1 KB."""
    text = ("A reverse proxy sits between clients and an API. It accepts "
            "each request, chooses where and how to forward it - here, "
            "which API key of a pool has room left under its per-minute "
            "and per-day quotas - sends it upstream over a kept-alive TLS "
            "connection, and relays the answer back as it arrives. Because "
            "it sees every answer, it can count the tokens each key spent, "
            "cool a key down when the upstream says it is rate-limited, "
            "and retry on another key before the client notices anything.")
    obj = {
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.2837741742815289,
            "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 14, "candidatesTokenCount": 96,
            "totalTokenCount": 302, "thoughtsTokenCount": 192,
            "promptTokensDetails": [{"modality": "TEXT",
                                     "tokenCount": 14}]},
        "modelVersion": MODEL,
        "responseId": "Wq1EaNatLPGnvdIPp5CUuQQ"}
    s = json.dumps(obj, indent=2) + "\n"
    assert "'" not in s and "$" not in s and "\\" not in s
    return s


def user_line():
    return "user root root;\n" if os.geteuid() == 0 else ""


def nginx_common(tmp, name, workers):
    """The top of an nginx.conf with every path inside tmp."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, d, t) for t in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return d, (
        "%s"
        "worker_processes %d;\n"
        "worker_rlimit_nofile 8192;\n"
        "daemon off;\n"
        "master_process on;\n"
        "pid %s/nginx.pid;\n"
        "error_log %s/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "%s"
        "    keepalive_timeout 300s;\n"
        "    keepalive_requests 100000000;\n"
        % (user_line(), workers, d, d, temps))


def upstream_nginx(tmp, port, workers):
    d, conf = nginx_common(tmp, "upstream", workers)
    conf += (
        "    ssl_session_cache shared:up:4m;\n"
        "    server {\n"
        "        listen 127.0.0.1:%d ssl backlog=4096;\n"
        "        ssl_certificate %s/server.pem;\n"
        "        ssl_certificate_key %s/server.key;\n"
        "        location / { return 404; }\n"
        "        location ~ ^/v1beta/models/[^/:]+:generateContent$ {\n"
        "            default_type \"application/json; charset=UTF-8\";\n"
        "            return 200 '%s';\n"
        "        }\n"
        "    }\n"
        "}\n" % (port, tmp, tmp, canned_answer()))
    return write_nginx(d, conf)


def proxy_nginx(tmp, port, up_port, stream_port, sse_port, standin_port,
                workers, access_log=False):
    """nginx as a reverse proxy, tuned the usual way: upstream keepalive,
    HTTP/1.1 with Connection cleared, TLS session reuse, verification on.
    port proxies the canned upstream; stream_port the SSE upstream and
    standin_port the stand-in, both unbuffered."""
    d, conf = nginx_common(tmp, "proxy-log" if access_log else "proxy",
                           workers)
    if access_log:
        conf = conf.replace("    access_log off;\n",
                            "    access_log %s/access.log;\n" % d)
    tls = (
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Connection \"\";\n"
        "            proxy_set_header Host localhost;\n"
        "            proxy_set_header x-goog-api-key %s;\n"
        "            proxy_ssl_server_name on;\n"
        "            proxy_ssl_name localhost;\n"
        "            proxy_ssl_session_reuse on;\n"
        "            proxy_ssl_verify on;\n"
        "            proxy_ssl_trusted_certificate %s/ca.pem;\n"
        % (KEYS[0], tmp))
    ups = [("gemini", up_port), ("sse", sse_port), ("standin", standin_port)]
    for name, p in ups:
        conf += (
            "    upstream %s {\n"
            "        server 127.0.0.1:%d;\n"
            "        keepalive 64;\n"
            "        keepalive_requests 100000000;\n"
            "        keepalive_timeout 300s;\n"
            "    }\n" % (name, p))
    conf += (
        "    server {\n"
        "        listen 127.0.0.1:%d backlog=4096;\n"
        "        location / {\n"
        "            proxy_pass https://gemini;\n%s"
        "        }\n"
        "    }\n" % (port, tls))
    if stream_port:
        conf += (
            "    server {\n"
            "        listen 127.0.0.1:%d backlog=4096;\n"
            "        location / {\n"
            "            proxy_pass https://sse;\n"
            "            proxy_buffering off;\n%s"
            "        }\n"
            "        location /standin/ {\n"
            "            proxy_pass https://standin/;\n"
            "            proxy_buffering off;\n"
            "            proxy_read_timeout 600s;\n%s"
            "        }\n"
            "    }\n" % (stream_port, tls, tls))
    conf += "}\n"
    return write_nginx(d, conf)


def write_nginx(d, conf):
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    r = subprocess.run(["nginx", "-t", "-p", d, "-c", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("nginx -t %s:\n%s" % (path, r.stderr))
    return path


def start_nginx(path, port, what):
    d = os.path.dirname(path)
    p = start(["nginx", "-p", d, "-c", path], what,
              stderr=subprocess.DEVNULL)
    wait_port(port, p, what)
    return p


def proc_of(what):
    return [p for p, w in PROCS if w == what][0]


# ---------------------------------------------------------------------------
# gemini-looper

def looper_config(tmp, name, port, upstream_port, workers, level="error"):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    nolimit = {"tpm_limit": None, "tpd_limit": None, "rpm_limit": None,
               "rpd_limit": None}
    cfg = {
        "priority_keys": KEYS[:2],
        "secondary_keys": KEYS[2:],
        "models": {MODEL: nolimit, "gemini-2.5-pro": nolimit},
        "reset_after": "00:00",
        "timezone": "UTC",
        "default_model": MODEL,
        "listen": "127.0.0.1:%d" % port,
        "upstream": "https://127.0.0.1:%d" % upstream_port,
        "upstream_ca_file": os.path.join(tmp, "ca.pem"),
        "usage_file": os.path.join(d, "key_usage.json"),
        "pidfile": os.path.join(d, "gemini-looper.pid"),
        "log_file": os.path.join(d, "daemon.log"),
        "log_level": level,
        "workers": workers,
        "upstream_timeout_s": 600,
        "keepalive_timeout_s": 300,
        # Streams the bench abandons end only with their upstream: do not
        # wait for them at the end.
        "shutdown_timeout_s": 2,
    }
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(path, 0o600)
    return path


def start_looper(binary, conf, port, nworkers, what):
    p = start([binary, "-d", "-c", conf], what, stderr=subprocess.DEVNULL,
              cwd=os.path.dirname(conf))
    wait_port(port, p, what)
    deadline = time.monotonic() + 60
    while len(children(p.pid)) < nworkers:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("%s: workers did not start" % what)
        time.sleep(0.1)
    return p


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
    return sorted(out)


# ---------------------------------------------------------------------------
# Throughput

def wrk(url, conns, seconds, threads=2):
    threads = min(threads, conns)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
           "--latency", "-s", os.path.join(BENCH, "post.lua"), url]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=seconds + 60)
    m = re.search(r"^BENCH (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise SystemExit("wrk failed: %s\n%s%s" % (" ".join(cmd), r.stdout,
                                                     r.stderr))
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


def cpu_ns(pids):
    """CPU time (user + system) the processes have used, in ns."""
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/schedstat" % p) as f:
                t += int(f.read().split()[0])
        except OSError:
            pass
    return t


def tree(pid):
    return [pid] + children(pid)


def throughput(targets, levels, seconds, rounds=3):
    """targets: [(name, url, pid of the server)].  At each level every
    target is warmed up, then measured in rounds taking turns, seconds in
    all: a burst of other work on the machine then spoils one round of
    each rather than one target's whole run.  req/s, p50 and p99 are the
    medians of the rounds; CPU per request: what the server's processes
    used during the rounds, divided by their requests."""
    out = {}
    each = max(2, int(round(seconds / float(rounds))))
    for c in levels:
        for _, url, _ in targets:
            wrk(url, c, 2)
        runs = {name: [] for name, _, _ in targets}
        cpu = {name: 0 for name, _, _ in targets}
        for _ in range(rounds):
            for name, url, pid in targets:
                pids = tree(pid)
                t0 = cpu_ns(pids)
                runs[name].append(wrk(url, c, each))
                cpu[name] += cpu_ns(pids) - t0
        for name, _, _ in targets:
            rs = runs[name]
            reqs = sum(x["requests"] for x in rs)
            r = {k: statistics.median(x[k] for x in rs)
                 for k in ("rps", "p50", "p90", "p99")}
            r["requests"] = reqs
            r["errors"] = sum(x["errors"] for x in rs)
            r["non2xx"] = sum(x["non2xx"] for x in rs)
            r["cpu_us"] = cpu[name] / 1000.0 / max(reqs, 1)
            r["rounds"] = [round(x["rps"]) for x in rs]
            out[(name, c)] = r
            log("  %-22s c=%-3d %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  "
                "cpu %5.1f us/req  rounds %s%s" % (
                    name, c, r["rps"], r["p50"] / 1000, r["p99"] / 1000,
                    r["cpu_us"], r["rounds"],
                    "  ERRORS %d non-2xx %d" % (r["errors"], r["non2xx"])
                    if r["errors"] or r["non2xx"] else ""))
    return out


# ---------------------------------------------------------------------------
# Streaming: a small SSE upstream that stamps its events

class SSEServer(threading.Thread):
    """TLS, HTTP/1.1 keep-alive, a thread per connection.  Any POST gets an
    SSE answer: STANDIN:chunks=N events (default 5) STANDIN:delay_ms=N apart
    (default 200), each a Gemini streamGenerateContent chunk with a
    cumulative usageMetadata and "benchSentNs": CLOCK_MONOTONIC in ns, taken
    just before its write."""

    def __init__(self, cert, key):
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.done = False

    def run(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def close(self):
        self.done = True
        self.sock.close()

    def serve(self, raw):
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = self.ctx.wrap_socket(raw, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                m = re.search(rb"STANDIN:chunks=(\d+)", body)
                chunks = int(m.group(1)) if m else 5
                m = re.search(rb"STANDIN:delay_ms=(\d+)", body)
                delay = (int(m.group(1)) if m else 200) / 1000.0
                c.sendall(b"HTTP/1.1 200 OK\r\n"
                          b"Content-Type: text/event-stream\r\n"
                          b"Vary: Origin, X-Origin, Referer\r\n"
                          b"X-Content-Type-Options: nosniff\r\n"
                          b"Server-Timing: gfet4t7; dur=512\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(chunks):
                    if i:
                        time.sleep(delay)
                    last = i == chunks - 1
                    ev = {"candidates": [{"content": {"parts": [
                        {"text": "Part %d of the answer, a sentence or "
                                 "two of generated text. " % i}],
                        "role": "model"}, "index": 0}],
                        "usageMetadata": {
                            "promptTokenCount": 14,
                            "candidatesTokenCount": 20 * (i + 1),
                            "totalTokenCount": 14 + 20 * (i + 1)},
                        "modelVersion": MODEL,
                        "responseId": "Wq1EaNatLPGnvdIPp5CUuQQ"}
                    if last:
                        ev["candidates"][0]["finishReason"] = "STOP"
                    ev["benchSentNs"] = time.monotonic_ns()
                    data = b"data: " + json.dumps(
                        ev, separators=(",", ":")).encode() + b"\r\n\r\n"
                    c.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                c.sendall(b"0\r\n\r\n")
        except (OSError, ValueError):
            pass
        finally:
            raw.close()


def sse_request(host, chunks, delay_ms, extra=""):
    body = json.dumps({"contents": [{"role": "user", "parts": [
        {"text": "Tell me a story. STANDIN:chunks=%d STANDIN:delay_ms=%d%s"
                 % (chunks, delay_ms, extra)}]}]}).encode()
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\n"
            b"Content-Type: application/json\r\n"
            b"x-goog-api-key: client-key-replaced-by-the-proxy\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (SSE_PATH.encode(), host.encode(), len(body), body))


STAMP = re.compile(rb'"benchSentNs":(\d+)')


def stream_client(port, tls_ctx, host, chunks, delay_ms, warm, until, out,
                  lock):
    """Requests one after another over one kept-alive connection until the
    monotonic time until; appends (first_ns, [transit_ns...]) to out for
    those that start after the monotonic time warm (before it, the
    connections on the way are opened and warmed up)."""
    sock = None
    while time.monotonic() < until:
        warming = time.monotonic() < warm
        try:
            if sock is None:
                raw = socket.create_connection(("127.0.0.1", port))
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = (tls_ctx.wrap_socket(raw, server_hostname=host)
                        if tls_ctx else raw)
            time.sleep(random.uniform(0.0, 0.05))  # no lockstep
            req = sse_request(host, 2 if warming else chunks,
                              0 if warming else delay_ms)
            sock.sendall(req)
            sent = time.monotonic_ns()
            buf = b""
            seen = 0
            first = None
            transits = []
            while not buf.endswith(b"\r\n0\r\n\r\n"):
                d = sock.recv(65536)
                now = time.monotonic_ns()
                if not d:
                    raise ConnectionError("closed")
                buf += d
                stamps = STAMP.findall(buf)
                for s in stamps[seen:]:
                    if first is None:
                        first = now - sent
                    transits.append(now - int(s))
                seen = len(stamps)
            if seen != (2 if warming else chunks) or \
                    not buf.startswith(b"HTTP/1.1 200"):
                raise ConnectionError("bad answer: %r" % buf[:200])
            if warming:
                continue
            with lock:
                out.append((first, transits))
        except (OSError, ConnectionError) as e:
            log("  stream client: %s" % e)
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.1)
    if sock is not None:
        sock.close()


def stream_bench(name, port, tls_ctx, seconds, clients, chunks, delay_ms):
    out = []
    lock = threading.Lock()
    # A second of quick requests first opens the connections on the way.
    warm = time.monotonic() + 1.0
    until = warm + seconds
    ts = [threading.Thread(target=stream_client, args=(
        port, tls_ctx, "localhost", chunks, delay_ms, warm, until, out,
        lock))
        for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    firsts = [f for f, _ in out]
    later = [x for _, tr in out for x in tr[1:]]
    r = {"requests": len(out), "first": firsts, "transit": later}
    log("  %-22s %d streams  first event p50 %.3f ms  transit p50 %.3f ms"
        % (name, len(out), pct(firsts, 50) / 1e6, pct(later, 50) / 1e6))
    return r


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ---------------------------------------------------------------------------
# Memory

def smaps(pid):
    r = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and \
                    parts[1].isdigit():
                r[parts[0][:-1]] = int(parts[1])
    r["Private"] = r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
    return r


def mem_sum(pids):
    tot = {"Pss": 0, "Private": 0, "Rss": 0}
    for p in pids:
        try:
            s = smaps(p)
        except OSError:
            continue
        for k in tot:
            tot[k] += s.get(k, 0)
    return tot


def sockets(pid):
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(
                        "socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def served(pids):
    """The workers that hold an upstream connection besides the listening
    socket: those that have served."""
    return [p for p in pids if sockets(p) >= 2] or pids


def mem_median(pids):
    ss = []
    for p in pids:
        try:
            ss.append(smaps(p))
        except OSError:
            pass
    return {k: int(statistics.median(s.get(k, 0) for s in ss))
            for k in ("Pss", "Private", "Rss", "Private_Dirty")}


def hold_streams(port, n, path_prefix, delay_ms, timeout=120):
    """Open n streaming requests and wait until each has its first event.
    Returns the sockets (still streaming)."""
    sel = selectors.DefaultSelector()
    socks = []
    got = {}
    deadline = time.monotonic() + timeout
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        req = sse_request("localhost", 2, delay_ms)
        if path_prefix:
            req = req.replace(b"POST /", b"POST " + path_prefix.encode() +
                              b"/", 1)
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
        got[i] = b""
        if i % 50 == 49:
            time.sleep(0.2)   # the stand-in's accept backlog
    waiting = set(range(n))
    while waiting and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            i = key.data
            try:
                d = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("stream %d closed: %r" % (i, got[i][:300]))
            got[i] += d
            if b"data: " in got[i]:
                waiting.discard(i)
                sel.unregister(key.fileobj)
    sel.close()
    if waiting:
        raise SystemExit("%d of %d streams did not start" % (len(waiting), n))
    return socks


# ---------------------------------------------------------------------------
# The report

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memkb = int(f.readline().split()[1])
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True,
                             text=True).stderr.strip().split("/")[-1]
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True,
                           text=True).stdout.split()[1]
    ossl = subprocess.run(["openssl", "version"], capture_output=True,
                          text=True).stdout.split()[1]
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "mem": "%.0f GiB" % (memkb / 1048576), "os": osname,
            "nginx": nginx_v, "wrk": wrk_v, "openssl": ossl,
            "python": platform.python_version()}


def ms(us):
    return "%.3f" % (us / 1000.0)


def report(args, m, tp, st, mem, nworkers, ngx_workers, up_workers):
    L = []
    L.append("Machine: %d × %s, %s RAM, Linux %s (%s); nginx %s, wrk %s, "
             "OpenSSL %s, Python %s." % (
                 m["nproc"], m["cpu"], m["mem"], m["kernel"], m["os"],
                 m["nginx"], m["wrk"], m["openssl"], m["python"]))
    L.append("")
    L.append("Command: `make bench` (`%s`), %s." % (
        " ".join(["python3", "tests/bench/bench.py"] + args.argv),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    L.append("")
    if tp:
        levels = sorted({c for (_, c) in tp})
        L.append("**Throughput**: wrk, %d s per cell in 3 rounds taking "
                 "turns between the three paths (after 2 s of warm-up); "
                 "req/s, p50 and p99 are the medians of the rounds. "
                 "2 threads (1 at c=1), a %d-byte generateContent POST; the "
                 "upstream is nginx (%d worker%s) answering a canned %d-byte "
                 "JSON over TLS 1.3 with keep-alive. nginx proxy: %d workers, "
                 "upstream keepalive 64, proxy_ssl_session_reuse, "
                 "verification on, no access log. gemini-looper: %d workers, "
                 "log_level error (no access log); the rows with "
                 "\"+ access log\" have it on for both (gemini-looper: "
                 "log_level notice, to a file). All on the same %d cores. "
                 "Latency in ms. CPU µs/req: the CPU time (user + system) "
                 "the server's processes used during the run, per request "
                 "(for direct, the upstream's)." % (
                     args.duration, post_body_len(),
                     up_workers, "" if up_workers == 1 else "s",
                     len(canned_answer()), ngx_workers, nworkers,
                     m["nproc"]))
        L.append("")
        L.append("| conns | path | req/s | p50 | p99 | CPU µs/req |")
        L.append("| ---: | --- | ---: | ---: | ---: | ---: |")
        names = ["direct", "nginx", "gemini-looper", "nginx + access log",
                 "gemini-looper + access log"]
        for c in levels:
            for name in names:
                if (name, c) not in tp:
                    continue
                r = tp[(name, c)]
                L.append("| %d | %s | %.0f | %s | %s | %.1f |" % (
                    c, name + (" (https)" if name == "direct" else ""),
                    r["rps"], ms(r["p50"]), ms(r["p99"]), r["cpu_us"]))
        L.append("")
        L.append("gemini-looper against nginx (ratios: gemini-looper / "
                 "nginx; overhead: the proxy's p50 minus the direct p50, "
                 "ms):")
        L.append("")
        L.append("| conns | req/s ratio | p50 ratio | p99 ratio | CPU/req "
                 "ratio | p50 overhead: nginx | p50 overhead: "
                 "gemini-looper |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in levels:
            for suffix in ("", " + access log"):
                if ("gemini-looper" + suffix, c) not in tp:
                    continue
                d = tp[("direct", c)]
                n = tp[("nginx" + suffix, c)]
                g = tp[("gemini-looper" + suffix, c)]
                L.append("| %s | %.2f | %.2f | %.2f | %.2f | %s | %s |" % (
                    "%d%s" % (c, ", access logs on" if suffix else ""),
                    g["rps"] / n["rps"], g["p50"] / max(n["p50"], 1),
                    g["p99"] / max(n["p99"], 1),
                    g["cpu_us"] / max(n["cpu_us"], 0.001),
                    ms(n["p50"] - d["p50"]), ms(g["p50"] - d["p50"])))
        L.append("")
    if st:
        L.append("**Streaming**: %d clients, each a kept-alive connection "
                 "making streamGenerateContent?alt=sse requests one after "
                 "another for %d s; the SSE upstream (TLS, in "
                 "tests/bench/bench.py) sends %d events %d ms apart, each "
                 "stamped with CLOCK_MONOTONIC when sent. *First event*: "
                 "from the request's last byte sent to the first event's "
                 "arrival. *Transit*: each later event's arrival minus its "
                 "stamp. *Added*: the difference from the direct path at "
                 "the same percentile. ms." % (
                     args.stream_clients, args.stream_seconds,
                     args.chunks, args.delay_ms))
        L.append("")
        L.append("| path | streams | first event p50 / p99 | added p50 / "
                 "p99 | transit p50 / p99 | added p50 / p99 |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        base = st["direct"]
        for name in ("direct", "nginx", "gemini-looper"):
            if name not in st:
                continue
            r = st[name]
            f50, f99 = pct(r["first"], 50), pct(r["first"], 99)
            t50, t99 = pct(r["transit"], 50), pct(r["transit"], 99)
            if name == "direct":
                add1 = add2 = "—"
            else:
                add1 = "%.3f / %.3f" % (
                    (f50 - pct(base["first"], 50)) / 1e6,
                    (f99 - pct(base["first"], 99)) / 1e6)
                add2 = "%.3f / %.3f" % (
                    (t50 - pct(base["transit"], 50)) / 1e6,
                    (t99 - pct(base["transit"], 99)) / 1e6)
            L.append("| %s | %d | %.3f / %.3f | %s | %.3f / %.3f | %s |" % (
                name + (" (https)" if name == "direct" else ""),
                r["requests"], f50 / 1e6, f99 / 1e6, add1, t50 / 1e6,
                t99 / 1e6, add2))
        L.append("")
    if mem:
        L.append("**Memory** (KiB, from /proc/PID/smaps_rollup; *private* "
                 "= Private_Clean + Private_Dirty; PSS counts shared pages "
                 "and the shared-memory segment pro rata). Idle workers: "
                 "the median over the pool. Streams: %d concurrent "
                 "streamGenerateContent requests held open against the "
                 "stand-in Gemini (tests/standin), each waiting %d s between "
                 "its events; gemini-looper with a fixed pool of %d workers, "
                 "nginx with %d." % (
                     args.mem_streams, args.mem_delay_ms // 1000,
                     mem["pool"], ngx_workers))
        L.append("")
        L.append("| what | PSS | private | RSS |")
        L.append("| --- | ---: | ---: | ---: |")
        for label, v in mem["rows"]:
            L.append("| %s | %d | %d | %d |" % (label, v["Pss"],
                                               v["Private"], v["Rss"]))
        L.append("")
    return "\n".join(L)


def post_body_len():
    with open(os.path.join(BENCH, "post.lua")) as f:
        s = f.read()
    body = "".join(re.findall(r"'([^']*)'", s.split("wrk.body", 1)[1]
                              .split("done =", 1)[0]))
    return len(body)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "gemini-looper"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "results.md"))
    ap.add_argument("--duration", type=int, default=9)
    ap.add_argument("--conns", default="1,8,32,64")
    ap.add_argument("--workers", type=int, default=0,
                    help="gemini-looper's pool (default: max conns + 8)")
    ap.add_argument("--nginx-workers", type=int, default=os.cpu_count())
    ap.add_argument("--upstream-workers", type=int, default=1)
    ap.add_argument("--stream-seconds", type=int, default=40)
    ap.add_argument("--stream-clients", type=int, default=4)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--delay-ms", type=int, default=200)
    ap.add_argument("--mem-streams", type=int, default=500)
    ap.add_argument("--mem-delay-ms", type=int, default=60000)
    ap.add_argument("--live-sessions", type=int,
                    default=livebench.env_int("LIVE_SESSIONS", 200))
    ap.add_argument("--live-seconds", type=int,
                    default=livebench.env_int("LIVE_SECONDS", 30))
    ap.add_argument("--skip", default="",
                    help="comma-separated: throughput,stream,live,memory")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    skip = set(filter(None, args.skip.split(",")))
    levels = [int(x) for x in args.conns.split(",")]
    nworkers = args.workers or max(levels) + 8
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit("%s is missing: make bench-deps" % tool)
    if not os.access(args.bin, os.X_OK):
        raise SystemExit("%s: not built" % args.bin)
    args.bin = os.path.abspath(args.bin)
    # A TERM stops the run the way Ctrl-C does: everything started goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    t_start = time.monotonic()
    load = [open("/proc/loadavg").read().split()[0]]
    tmp = tempfile.mkdtemp(prefix="gl-bench-")
    os.chmod(tmp, 0o755)
    subprocess.run(["sh", os.path.join(ROOT, "tests", "mkca.sh"), tmp],
                   check=True, stdout=subprocess.DEVNULL)
    m = machine()
    tp, st, mem, lv = {}, {}, None, None
    try:
        up_port = free_port()
        start_nginx(upstream_nginx(tmp, up_port, args.upstream_workers),
                    up_port, "upstream nginx")
        sse = SSEServer(os.path.join(tmp, "server.pem"),
                        os.path.join(tmp, "server.key"))
        sse.start()

        # The stand-in, for the memory run (and nginx's /standin/).
        with open(os.path.join(tmp, "standin.json"), "w") as f:
            json.dump({"keys": {k: "p%d" % i for i, k in enumerate(KEYS)}},
                      f)
        standin = start([sys.executable, os.path.join(
            ROOT, "tests", "standin", "gemini_standin.py"),
            "--cert", os.path.join(tmp, "server.pem"),
            "--key", os.path.join(tmp, "server.key"), "--port", "0",
            "--config", os.path.join(tmp, "standin.json")], "stand-in",
            stdout=subprocess.PIPE, text=True)
        line = standin.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            raise SystemExit("the stand-in did not start")
        standin_port = int(line[1])

        ngx_port, ngx_sport = free_port(), free_port()
        start_nginx(proxy_nginx(tmp, ngx_port, up_port, ngx_sport, sse.port,
                                standin_port, args.nginx_workers),
                    ngx_port, "nginx proxy")

        if "throughput" not in skip:
            lp = free_port()
            looper = start_looper(args.bin, looper_config(
                tmp, "looper", lp, up_port, nworkers), lp, nworkers,
                "gemini-looper")
            mem_fresh = mem_median(children(looper.pid))
            log("throughput (%d s per cell):" % args.duration)
            tp = throughput([
                ("direct", "https://127.0.0.1:%d%s" % (up_port, GEN_PATH),
                 proc_of("upstream nginx").pid),
                ("nginx", "http://127.0.0.1:%d%s" % (ngx_port, GEN_PATH),
                 proc_of("nginx proxy").pid),
                ("gemini-looper", "http://127.0.0.1:%d%s" % (lp, GEN_PATH),
                 looper.pid),
            ], levels, args.duration)
            mem_served = mem_median(served(children(looper.pid)))
            mem_master = smaps(looper.pid)
            stop(looper)
            # The access log on, for both, at one level.
            c = 32 if 32 in levels else max(levels)
            lp2, np2 = free_port(), free_port()
            looper = start_looper(args.bin, looper_config(
                tmp, "looper-log", lp2, up_port, nworkers, "notice"),
                lp2, nworkers, "gemini-looper (access log)")
            ngx_log = start_nginx(proxy_nginx(
                tmp, np2, up_port, 0, sse.port, standin_port,
                args.nginx_workers, access_log=True), np2,
                "nginx proxy (access log)")
            tp.update(throughput([
                ("nginx + access log",
                 "http://127.0.0.1:%d%s" % (np2, GEN_PATH), ngx_log.pid),
                ("gemini-looper + access log",
                 "http://127.0.0.1:%d%s" % (lp2, GEN_PATH), looper.pid)],
                [c], args.duration))
            stop(looper)
            stop(ngx_log)
            load.append(open("/proc/loadavg").read().split()[0])
            mem = {"pool": 0, "rows": [
                ("gemini-looper master (%d workers)" % nworkers, mem_master),
                ("gemini-looper idle worker, fresh", mem_fresh),
                ("gemini-looper idle worker, after serving (upstream TLS "
                 "connection open)", mem_served)]}

        if "stream" not in skip:
            lp = free_port()
            looper = start_looper(args.bin, looper_config(
                tmp, "looper-sse", lp, sse.port, args.stream_clients + 4),
                lp, args.stream_clients + 4, "gemini-looper (sse)")
            cctx = ssl.create_default_context(
                cafile=os.path.join(tmp, "ca.pem"))
            log("streaming (%d s per path):" % args.stream_seconds)
            for name, port, ctx in (("direct", sse.port, cctx),
                                    ("nginx", ngx_sport, None),
                                    ("gemini-looper", lp, None)):
                st[name] = stream_bench(name, port, ctx, args.stream_seconds,
                                        args.stream_clients, args.chunks,
                                        args.delay_ms)
            stop(looper)

        if "live" not in skip:
            # Before the memory run, whose abandoned slow streams keep
            # stand-in threads busy for a while.
            lv = livebench.run(args.bin, tmp, standin_port,
                               args.live_sessions, args.live_seconds)

        if "memory" not in skip:
            n = args.mem_streams
            pool = n + 20
            lp = free_port()
            looper = start_looper(args.bin, looper_config(
                tmp, "looper-mem", lp, standin_port, pool), lp, pool,
                "gemini-looper (%d workers)" % pool)
            time.sleep(1)
            ws = children(looper.pid)
            rows = [("gemini-looper master (%d workers)" % pool,
                     smaps(looper.pid)),
                    ("gemini-looper idle worker, fresh", mem_median(ws))]
            idle_pool = mem_sum([looper.pid] + ws)
            log("memory: %d streams through gemini-looper" % n)
            socks = hold_streams(lp, n, "", args.mem_delay_ms)
            ws = children(looper.pid)
            busy = mem_sum([looper.pid] + ws)
            for s in socks:
                s.close()
            stop(looper, 60)
            if mem is not None:
                rows.insert(2, mem["rows"][2])
            rows.append(("gemini-looper whole pool, idle (master + %d "
                         "workers)" % pool, idle_pool))
            rows.append(("gemini-looper whole pool holding %d streams" % n,
                         busy))
            rows.append(("gemini-looper: added per stream", {
                k: (busy[k] - idle_pool[k]) // n for k in busy}))
            log("memory: %d streams through nginx" % n)
            ngx = proc_of("nginx proxy")
            nidle = mem_sum([ngx.pid] + children(ngx.pid))
            socks = hold_streams(ngx_sport, n, "/standin", args.mem_delay_ms)
            nbusy = mem_sum([ngx.pid] + children(ngx.pid))
            for s in socks:
                s.close()
            rows.append(("nginx, idle (master + %d workers)" %
                         args.nginx_workers, nidle))
            rows.append(("nginx holding %d streams" % n, nbusy))
            rows.append(("nginx: added per stream", {
                k: (nbusy[k] - nidle[k]) // n for k in nbusy}))
            mem = {"pool": pool, "rows": rows}
    finally:
        stop_all()
        shutil.rmtree(tmp, True)

    text = report(args, m, tp, st, mem, nworkers, args.nginx_workers,
                  args.upstream_workers)
    if lv is not None:
        text += "\n" + livebench.report(lv)
    text += ("\nThe run took %.0f s; the load average was %s at its start%s."
             "\n" % (time.monotonic() - t_start, load[0],
                      " and %s after the throughput runs" % load[1]
                      if len(load) > 1 else ""))
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    log("written to %s" % args.out)


if __name__ == "__main__":
    main()
