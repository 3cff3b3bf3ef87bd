"""Hostile input against the real daemon: request smuggling, slowloris,
oversized everything, 10,000 keys in the config, path traversal on the
dashboard's files.  No upstream is needed: every request here is answered,
or refused, by the proxy itself.  Each test is bounded in time and closes
its sockets."""
import json
import os
import re
import select
import socket
import time

from lib import Daemon, taken, wait_for


def _connect(d, timeout=5):
    return socket.create_connection(("127.0.0.1", d.port), timeout=timeout)


def _read_all(s, timeout=5):
    """Everything until the daemon closes (EOF, or a reset after its
    answer); fails when it keeps the connection open."""
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except socket.timeout:
            raise AssertionError("the daemon kept the connection open; "
                                 "got %r" % out[:300])
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    return out


def _responses(data):
    """The responses in a byte stream: [(status, headers, body)]."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "truncated response: %r" % data[:300]
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", lines[0])
        assert m, "not a status line: %r" % lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        assert len(rest) >= n, "short body: %r" % data[:300]
        out.append((int(m.group(1)), hdrs, rest[:n]))
        data = rest[n:]
    return out


def _exchange(d, data, timeout=5):
    """Send data, keep our side open, and read until the daemon closes."""
    s = _connect(d, timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass    # it answered and closed before taking it all
        return _responses(_read_all(s, timeout))
    finally:
        s.close()


def _gemini_error(resp, code):
    """resp is our own error in Gemini's shape, and closes the connection."""
    st, h, body = resp
    assert st == code, "status %d, want %d: %r" % (st, code, body)
    assert h.get("content-type", "").startswith("application/json"), h
    err = json.loads(body)["error"]
    assert err["code"] == code, err
    assert err["status"] and err["message"], err
    return err


def _healthy(d, timeout=5):
    st, _, body = d.request("GET", "/healthz", timeout=timeout)
    assert st == 200 and b"ok" in body, (st, body)


def _worker_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


H = b"Host: x\r\n"

# (what, request, status): each must get exactly one answer, in Gemini's
# shape, and then the connection closed.
SMUGGLING = [
    ("CL + TE", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\nGET /smuggled-1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("TE + CL", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"0\r\n\r\nGET /smuggled-2 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("two Content-Lengths", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Content-Length: 5\r\nContent-Length: 41\r\n\r\n"
     b"hello" b"GET /smuggled-3 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("a Content-Length list", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Content-Length: 5, 41\r\n\r\nhello", 400),
    ("a negative Content-Length", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Content-Length: -1\r\n\r\n", 400),
    ("a signed Content-Length", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Content-Length: +5\r\n\r\nhello", 400),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\n" + H +
     b"X-Folded: a\r\n b\r\n\r\n", 400),
    ("obs-fold of the first field", b"GET /healthz HTTP/1.1\r\n"
     b" Host: x\r\n\r\n", 400),
    ("bare LF", b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
    ("one bare LF", b"GET /healthz HTTP/1.1\r\nHost: x\n\r\n", 400),
    ("bare CR", b"GET /healthz HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    ("Transfer-Encoding: chunked, identity", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" +
     H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501),
    ("Transfer-Encoding: xchunked", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("chunked twice", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 501),
    ("Transfer-Encoding in HTTP/1.0", b"POST /v1beta/models/m:generateContent HTTP/1.0\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("space before colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
     400),
    ("space before the colon of Content-Length",
     b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello",
     400),
    ("a NUL in a header", b"GET /healthz HTTP/1.1\r\n" + H +
     b"X-A: a\x00b\r\n\r\n", 400),
    ("a NUL in a header name", b"GET /healthz HTTP/1.1\r\n" + H +
     b"X-\x00A: b\r\n\r\n", 400),
    ("two Hosts", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
     400),
    ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /healthz\r\n\r\n", 400),
    ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\n" + H + b"\r\n", 400),
    ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("an unknown expectation", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417),
    ("a request line of 70 KB", b"GET /" + b"a" * 70000 +
     b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("101 header fields", b"GET /healthz HTTP/1.1\r\n" + H +
     b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n", 431),
    ("a 65 KiB header field", b"GET /healthz HTTP/1.1\r\n" + H +
     b"X-Big: " + b"b" * (65 * 1024) + b"\r\n\r\n", 431),
    ("a chunked body over max_body_bytes", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" +
     H + b"Transfer-Encoding: chunked\r\n\r\n" +
     b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(5)) +
     b"0\r\n\r\n", 413),
    ("a chunk size that overflows", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffffffff\r\n", 400),
    ("a chunk size of 2^64 + 1", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n", 400),
    ("a chunk size that is not hex", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk data without its CRLF", b"POST /v1beta/models/m:generateContent HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
]


def test_smuggling_and_malformed_requests():
    d = Daemon(workers=2, max_body_bytes=1024)
    d.start()
    workers = wait_for(lambda: len(d.workers()) == 2 and d.workers())
    for what, req, code in SMUGGLING:
        resps = _exchange(d, req)
        assert len(resps) == 1, "%s: %d answers: %r" % (what, len(resps),
                                                        resps)
        try:
            _gemini_error(resps[0], code)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e))
        assert resps[0][1].get("connection") == "close", (what, resps[0])
        # The worker that refused it serves the next client.
        _healthy(d)
    log = d.log()
    # What rode behind a refused head was never read as a request.
    assert "/smuggled" not in log, log
    assert "killed by signal" not in log and "exited with" not in log, log
    assert d.workers() == workers
    assert d.stop() == 0


def test_body_over_limit_refused_without_reading_it():
    d = Daemon(workers=2, max_body_bytes=1024)
    d.start()
    s = _connect(d)
    try:
        # Only the head and a few bytes go: a daemon that waited for the
        # body would answer after client_timeout_s (30 s), and _read_all
        # gives up after 5.
        s.sendall(b"POST /v1beta/models/gemini-2.5-flash:generateContent "
                  b"HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n{\"contents\":")
        resps = _responses(_read_all(s))
    finally:
        s.close()
    assert len(resps) == 1
    _gemini_error(resps[0], 413)
    assert resps[0][1].get("connection") == "close"
    # Expect: 100-continue gets the 413 instead of the 100.
    resps = _exchange(d, b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n")
    assert len(resps) == 1
    _gemini_error(resps[0], 413)
    _healthy(d)
    assert d.stop() == 0


def test_pipelined_requests_after_a_good_one_are_kept_apart():
    """A well-formed request followed by a smuggling attempt: the first is
    answered, the second refused, and nothing after it is read."""
    d = Daemon(workers=2)
    d.start()
    resps = _exchange(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n0\r\n\r\nGET /smuggled-4 HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n")
    assert [r[0] for r in resps] == [200, 400], resps
    assert "/smuggled" not in d.log()
    assert d.stop() == 0


# Slowloris: connections that send their request head a byte a second.
SLOW_CONNS = 300
SLOW_SECONDS = 10
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


class _Slow:
    """One trickling connection; reopened when the daemon drops it, the
    way an attacker would."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.sent = 0
        self.drops = 0
        self.open()

    def open(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=5)
        self.sock.setblocking(False)
        self.sent = 0

    def byte(self):
        b = SLOW_HEAD[self.sent:self.sent + 1] or b"a"
        try:
            if self.sock.send(b) == 1:
                self.sent += 1
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            self.dropped()

    def dropped(self):
        self.drops += 1
        self.close()
        try:
            self.open()
        except OSError:
            self.sock = None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def test_slowloris_does_not_starve_the_pool():
    d = Daemon(workers={"start": 8, "min_spare": 32, "max_spare": 64,
                        "max": 64})
    d.start()
    slow = []
    try:
        for _ in range(SLOW_CONNS):
            slow.append(_Slow(d.port))
        # The trickle fills the pool up to its max (workers built with
        # the sanitizers are slow to start).
        deadline = time.monotonic() + 40
        while len(d.workers()) < 64:
            assert time.monotonic() < deadline, \
                "the pool did not grow: %d workers" % len(d.workers())
            for c in slow:
                if c.sock is not None:
                    c.byte()
            time.sleep(0.5)

        # Workers built with the sanitizers take seconds to be ready;
        # what is measured is the steady state of the attack, after them.
        waits = []
        warm = time.monotonic() + 15
        end = None
        next_tick = time.monotonic()
        while end is None or time.monotonic() < end:
            if time.monotonic() >= next_tick:
                next_tick += 1.0
                # A byte a second from each; a dropped one reconnects.
                socks = [c.sock for c in slow if c.sock is not None]
                readable, _, _ = select.select(socks, [], [], 0)
                gone = set(readable)
                for c in slow:
                    if c.sock is None or c.sock in gone:
                        c.dropped()
                    else:
                        c.byte()
            t0 = time.monotonic()
            try:
                st, _, body = d.request("GET", "/healthz", timeout=2)
            except (socket.timeout, OSError) as e:
                if end is None and time.monotonic() < warm:
                    continue
                raise AssertionError(
                    "a normal client starved after %.1f s (%d slow "
                    "connections, %d drops so far): %r" %
                    (time.monotonic() - t0, SLOW_CONNS,
                     sum(c.drops for c in slow), e))
            assert st == 200 and b"ok" in body
            if end is None:
                end = time.monotonic() + SLOW_SECONDS
            else:
                waits.append(time.monotonic() - t0)
            time.sleep(0.2)
        assert max(waits) < 2.0, waits
        assert len(d.workers()) <= 64
    finally:
        for c in slow:
            c.close()
    _healthy(d)
    assert d.stop() == 0


def _answered(s, timeout):
    """The daemon's first answer on s within timeout, or None."""
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        return None
    data = s.recv(65536)
    return data.split(b"\r\n", 1)[0] if data else b"(closed)"


def test_idle_keepalive_gives_way_when_the_pool_is_full():
    """Kept-alive connections between requests hold a worker each; with
    the pool full, a new client gets one of them instead of waiting for
    keepalive_timeout_s."""
    d = Daemon(workers=2, keepalive_timeout_s=60)
    d.start()
    held = []
    try:
        for _ in range(2):
            s = _connect(d)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answered(s, 5).startswith(b"HTTP/1.1 200")
            held.append(s)
        # Well before keepalive_timeout_s (60 s) would free a worker.
        _healthy(d, timeout=20)
    finally:
        for s in held:
            s.close()
    assert d.stop() == 0


def test_request_in_its_body_is_never_given_up():
    """A request whose head is in keeps its worker, full pool or not."""
    d = Daemon(workers=2)
    d.start()
    held = []
    c = None
    try:
        for _ in range(2):
            s = _connect(d)
            s.sendall(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 10\r\n\r\n12345")
            held.append(s)
        # Both workers have a head and half a body when c comes.
        for s in held:
            wait_for(lambda: taken(d.port, s), what="a worker to read it")
        c = _connect(d)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answered(c, 1.5) is None, "a body in progress was dropped"
        for s in held:
            assert _answered(s, 0) is None
            s.sendall(b"67890")
            assert _answered(s, 5).startswith(b"HTTP/1.1 502"), s
        assert _answered(c, 5).startswith(b"HTTP/1.1 200")
    finally:
        for s in held + [c]:
            if s is not None:
                s.close()
    assert d.stop() == 0


def test_slow_head_is_served_when_there_is_room():
    """Without pressure a slow client is no attacker: a head sent in
    pieces over a few seconds is still served."""
    d = Daemon(workers=2)
    d.start()
    s = _connect(d)
    try:
        for b in [b"GET /heal", b"thz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"]:
            s.sendall(b)
            time.sleep(0.7)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        resps = _responses(_read_all(s))
    finally:
        s.close()
    assert [r[0] for r in resps] == [200, 200], resps
    assert d.stop() == 0


def _flood(d, head, piece, total):
    """Send head, then piece again and again up to total bytes, stopping
    as soon as the daemon answers or closes.  Returns (bytes sent, the
    answers)."""
    s = _connect(d, timeout=10)
    sent = 0
    try:
        s.sendall(head)
        while sent < total:
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        return sent, _responses(_read_all(s, timeout=10))
    finally:
        s.close()


def test_oversized_everything():
    d = Daemon(workers=2)
    d.start()
    workers = wait_for(lambda: len(d.workers()) == 2 and d.workers())
    rss0 = {w: _worker_rss_kb(w) for w in workers}
    big = 10 * 1024 * 1024

    # A 10 MB header block, in pieces: refused once 64 KiB are in.
    sent, resps = _flood(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                         b"h" * 65536, big)
    assert len(resps) == 1
    _gemini_error(resps[0], 431)
    assert sent < big, "the daemon read all of the 10 MB"
    _healthy(d)

    # Header fields, many short ones: the same.
    sent, resps = _flood(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                         b"".join(b"X-F%05d: v\r\n" % i for i in range(2000)),
                         big)
    assert len(resps) == 1
    _gemini_error(resps[0], 431)
    _healthy(d)

    # A URL of 1 MB.
    sent, resps = _flood(d, b"GET /", b"u" * 65536, 1024 * 1024)
    assert len(resps) == 1
    _gemini_error(resps[0], 414)
    _healthy(d)

    # An enormous chunked trailer: trailers make no body, so they are
    # bounded on their own.
    sent, resps = _flood(d, b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nX-Trailer: ",
                         b"t" * 65536, big)
    assert len(resps) == 1
    err = _gemini_error(resps[0], 400)
    assert "trailer" in err["message"], err
    assert sent < big
    _healthy(d)

    # A chunk-size line that never ends (extensions are ignored, not
    # kept, so they need a bound too).
    sent, resps = _flood(d, b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5;ext=",
                         b"e" * 65536, big)
    assert len(resps) == 1
    _gemini_error(resps[0], 400)
    _healthy(d)

    # Memory stayed bounded: no worker grew by what it was sent.
    assert d.workers() == workers
    for w in workers:
        grew = _worker_rss_kb(w) - rss0[w]
        assert grew < 8 * 1024, "worker %d grew by %d KiB" % (w, grew)
    assert d.stop() == 0


def _shm_bytes(text):
    """The segment's size and the keys it has room for, from the start-up
    line "shared memory: N bytes for K keys, ..."."""
    m = re.search(r"shared memory: (\d+) bytes for (\d+) keys", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def _keys(n):
    return ["AIzaSy%033d" % i for i in range(n)]


def _shm_for(nkeys):
    """(segment bytes, key slots) of a daemon started with nkeys keys."""
    keys = _keys(nkeys)
    d = Daemon(priority_keys=keys[:1 + nkeys // 2],
               secondary_keys=keys[1 + nkeys // 2:])
    r = d.start()
    size = _shm_bytes(r.stderr + d.log())
    assert d.stop() == 0
    return size


def test_ten_thousand_keys():
    keys = _keys(10000)
    d = Daemon(priority_keys=keys[:5000], secondary_keys=keys[5000:])
    t0 = time.monotonic()
    r = d.run("-t", "-c", d.config_path)
    dt = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    assert dt < 2.0, "-t took %.2f s" % dt
    assert "AIzaSy" not in r.stdout + r.stderr

    t0 = time.monotonic()
    r = d.start()
    wait_for(lambda: d.request("GET", "/healthz")[0] == 200, timeout=5,
             what="/healthz with 10,000 keys")
    st, h, body = d.request("GET", "/api/status_data", timeout=10)
    dt = time.monotonic() - t0
    assert st == 200, (st, body[:300])
    assert isinstance(json.loads(body), dict)
    assert "AIzaSy0000" not in body.decode(), "a key in the status data"
    assert dt < 6.0, "start and first status took %.2f s" % dt
    n, slots = _shm_bytes(r.stderr + d.log())
    assert d.stop() == 0
    assert 10000 <= slots <= 20000, slots

    # Shared memory grows with the keys, linearly: what a key costs from
    # 3 to 1,000 keys is what it costs from 1,000 to 10,000.
    n3, slots3 = _shm_for(3)
    n1k, slots1k = _shm_for(1000)
    low = (n1k - n3) / (slots1k - slots3)
    high = (n - n1k) / (slots - slots1k)
    assert 256 < high < 64 * 1024, high
    assert abs(low - high) < 0.05 * high, (n3, n1k, n, low, high)


TRAVERSALS = [
    "/status/../config.json",
    "/status/%2e%2e/config.json",
    "/status/%2E%2E/config.json",
    "/status/..%2fconfig.json",
    "/status/..%2Fconfig.json",
    "/status/%2e%2e%2fconfig.json",
    "/status/%252e%252e%252fconfig.json",
    "/status/....//config.json",
    "/status/./../config.json",
    "/status/status.html/../../config.json",
    "/status//etc/passwd",
    "/status///etc/passwd",
    "/status/etc/passwd",
    "/status/../../../../../../../../etc/passwd",
    "/status/\\..\\config.json",
    "/status/..\\config.json",
    "/status/..%5cconfig.json",
    "/status/%00../config.json",
    "/status/..;/config.json",
    "/status/config.json",
    "/status/key_usage.json",
    "/status/daemon.log",
    "/status/gemini-looper.pid",
    "/status/..",
    "/status/%2e%2e",
    "/status/.",
    "/status/~root/.ssh/id_rsa",
    "/status/proc/self/environ",
    "/status/%2fproc%2fself%2fenviron",
]


def test_path_traversal_on_dashboard_files():
    d = Daemon(workers=2)
    d.start()
    # Something to find, were the daemon to read from its directory.
    with open(os.path.join(d.dir, "secret.html"), "w") as f:
        f.write("<h1>not for you</h1>")
    paths = TRAVERSALS + ["/status/../secret.html",
                          "/status/" + d.dir + "/secret.html"]
    for path in paths:
        for method in (b"GET", b"HEAD"):
            s = _connect(d)
            try:
                s.sendall(method + b" " + path.encode() +
                          b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = _read_all(s)
            finally:
                s.close()
            head = data.split(b"\r\n", 1)[0]
            assert head.startswith(b"HTTP/1.1 404 "), (path, data[:300])
            for leak in (b"AIzaSyTestKey", b"priority_keys", b"root:",
                         b"not for you", b"PATH="):
                assert leak not in data, (path, leak)
            if method == b"GET":
                _gemini_error(_responses(data)[0], 404)
    # The dashboard itself is still there.
    st, _, body = d.request("GET", "/status/")
    assert st == 200 and b"<" in body
    _healthy(d)
    assert d.stop() == 0
