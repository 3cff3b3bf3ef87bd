"""Issue 12 section 5, honest streams: an answer that the upstream breaks
off once its head has gone to the client (a reset, a stall past
upstream_timeout_s, a clean close short of its end, a chunk cut in its
middle, garbled chunk framing) ends abnormally for the client, whatever
the framing on either side: no terminating chunk, fewer bytes than
Content-Length, and the connection closed even when kept alive (reset
when only the close frames the body, for an HTTP/1.0 client).  Never a
retry; usage settled with what was seen; the access log says broken=why;
/metrics counts gemini_looper_streams_broken_total{model,why}.
(A real SDK seeing the cut is test_sdk.py's.)
"""
import json
import re
import socket
import time

from lib import wait_for
from standin import FLASH, K1, K2, K3, StandIn, proxy_daemon, mask
from test_faults import body_of, cell_counts, clean_log, status_data

TIMEOUT_S = 2           # upstream_timeout_s: the stalls wait this long
SLACK = 2.5

SSE = "/v1beta/models/%s:streamGenerateContent?alt=sse" % FLASH
ARRAY = "/v1beta/models/%s:streamGenerateContent" % FLASH
GEN = "/v1beta/models/%s:generateContent" % FLASH
OPENAI = "/v1beta/openai/chat/completions"


class Seen:
    """What a raw client saw of one answer on a kept-alive connection:
    status, headers, the body (de-chunked), whether it ended as its
    framing says, whether a terminating chunk came, and how the
    connection ended afterwards ("open", "eof" or "reset")."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.complete = False
        self.last_chunk = False
        self.end = None

    def __repr__(self):
        return "Seen(status=%r complete=%r last_chunk=%r end=%r body=%r)" % (
            self.status, self.complete, self.last_chunk, self.end,
            self.body[:120])


class RawClient:
    """One connection, kept alive (no Connection: close), read by hand."""

    def __init__(self, port, minor=1, timeout=15):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.port, self.minor, self.timeout = port, minor, timeout
        self.buf = bytearray()
        self.eof = None     # "eof" or "reset" once seen

    def close(self):
        self.s.close()

    def _fill(self, deadline):
        if self.eof:
            raise EOFError(self.eof)
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no answer in time")
        self.s.settimeout(left)
        try:
            b = self.s.recv(65536)
        except ConnectionResetError:
            self.eof = "reset"
            raise EOFError("reset")
        if not b:
            self.eof = "eof"
            raise EOFError("eof")
        self.buf.extend(b)

    def _until(self, sep, deadline):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            self._fill(deadline)

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _chunked(self, a, deadline):
        while True:
            size = int(self._until(b"\r\n", deadline).split(b";")[0], 16)
            if size == 0:
                a.last_chunk = True
                self._until(b"\r\n", deadline)
                return
            a.body += self._take(size, deadline)
            self._take(2, deadline)

    def ask(self, path, text, linger=1.0):
        """Send one request, read its answer; then watch the connection
        for linger s to see whether it stays open."""
        a = Seen()
        body = body_of(text)
        if "/openai/" in path:
            body = json.dumps({"model": FLASH, "stream": True, "messages": [
                {"role": "user", "content": text}]}).encode()
        head = ("POST %s HTTP/1.%d\r\nHost: 127.0.0.1:%d\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n"
                "\r\n" % (path, self.minor, self.port, len(body)))
        self.s.sendall(head.encode() + body)
        deadline = time.monotonic() + self.timeout
        try:
            a.status = int(self._until(b"\r\n", deadline).split()[1])
            while True:
                line = self._until(b"\r\n", deadline).decode()
                if not line:
                    break
                k, v = line.split(":", 1)
                a.headers[k.strip().lower()] = v.strip()
            if "chunked" in a.headers.get("transfer-encoding", ""):
                self._chunked(a, deadline)
                a.complete = True
            elif "content-length" in a.headers:
                a.body = self._take(int(a.headers["content-length"]),
                                    deadline)
                a.complete = True
            else:
                try:
                    while True:
                        self._fill(deadline)
                except EOFError:
                    a.body = bytes(self.buf)
                    self.buf.clear()
        except EOFError:
            a.body += bytes(self.buf)
            self.buf.clear()
        if self.eof:
            a.end = self.eof
            return a
        try:
            self._fill(time.monotonic() + linger)
            a.end = "bytes after the answer"
        except EOFError:
            a.end = self.eof
        except socket.timeout:
            a.end = "open"
        return a


def broken_counts(d):
    """why -> gemini_looper_streams_broken_total for FLASH."""
    st, _, raw = d.request("GET", "/metrics")
    assert st == 200, st
    out = {}
    for m in re.finditer(r'^gemini_looper_streams_broken_total\{model="%s",'
                         r'why="(\w+)"\} (\d+)$' % re.escape(FLASH),
                         raw.decode(), re.M):
        out[m.group(1)] = int(m.group(2))
    return out


# (label, path, prompt, why, framing the client sees)
CASES = [
    ("sse reset", SSE, "STANDIN:fault=reset_midstream STANDIN:chunks=4",
     "reset", "chunked"),
    ("sse stall", SSE, "STANDIN:fault=stall_midstream STANDIN:chunks=4",
     "timeout", "chunked"),
    ("sse close", SSE, "STANDIN:fault=close_midstream STANDIN:chunks=4",
     "closed", "chunked"),
    ("sse chunk cut", SSE, "STANDIN:fault=cut_chunk STANDIN:chunks=4",
     "closed", "chunked"),
    ("sse chunk garbled", SSE, "STANDIN:fault=bad_chunk STANDIN:chunks=4",
     "malformed", "chunked"),
    ("array close", ARRAY, "STANDIN:fault=close_midstream STANDIN:chunks=4",
     "closed", "chunked"),
    ("openai sse reset", OPENAI,
     "STANDIN:fault=reset_midstream STANDIN:chunks=4", "reset", "chunked"),
    ("length reset", GEN, "STANDIN:fault=reset_midstream", "reset",
     "length"),
    ("length stall", GEN, "STANDIN:fault=stall_midstream", "timeout",
     "length"),
    ("length close", GEN, "STANDIN:fault=close_midstream", "closed",
     "length"),
    ("chunked close", GEN,
     "STANDIN:fault=close_midstream STANDIN:framing=chunked", "closed",
     "chunked"),
    ("chunked cut", GEN, "STANDIN:fault=cut_chunk STANDIN:framing=chunked",
     "closed", "chunked"),
    ("chunked garbled", GEN,
     "STANDIN:fault=bad_chunk STANDIN:framing=chunked", "malformed",
     "chunked"),
]


def check_cut(d, si, label, path, text, why, framing):
    since = si.last_seq()
    before = cell_counts(status_data(d)).get((mask(K1), FLASH), (0, 0))
    counts = broken_counts(d)
    nbroken = len([ln for ln in d.log().splitlines() if " broken=" in ln])
    c = RawClient(d.port)
    t0 = time.monotonic()
    # A whole answer first: the connection stays open for the next one.
    a = c.ask(GEN, "whole, on a kept-alive connection")
    assert a.status == 200 and a.complete and a.end == "open", (label, a)
    a = c.ask(path, "cut %s %s" % (label, text))
    took = time.monotonic() - t0
    c.close()
    assert a.status == 200 and not a.complete, (label, a)
    assert not a.last_chunk and a.end in ("eof", "reset"), (label, a)
    if framing == "chunked":
        assert "transfer-encoding" in a.headers, (label, a.headers)
    else:
        assert 0 < len(a.body) < int(a.headers["content-length"]), (label, a)
    if why == "timeout":
        assert TIMEOUT_S - 0.2 <= took < TIMEOUT_S + SLACK, (label, took)
    else:
        assert took < TIMEOUT_S, (label, took)
    # Bytes went out: no retry on another key, one request upstream.
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(K1, 200), (K1, 200)], (label, log)
    # Counted: the request, with the tokens the part that came said.
    want = before[0] + 2
    after = wait_for(lambda: (lambda x: x if x and x[0] == want else None)(
        cell_counts(status_data(d)).get((mask(K1), FLASH))), 20,
        "the cut request to be counted")
    assert after[1] <= before[1] + log[0]["total"] + log[1]["total"], \
        (label, before, after)
    now = broken_counts(d)
    assert now.get(why, 0) == counts.get(why, 0) + 1, (label, counts, now)
    assert sum(now.values()) == sum(counts.values()) + 1, (label, now)
    # The access log: the status the client got, and why it broke.
    lines = wait_for(lambda: [ln for ln in d.log().splitlines()
                              if " broken=" in ln][nbroken:] or None, 10,
                     "the access log line of " + label)
    assert len(lines) == 1 and " status=200 " in lines[0] and \
        lines[0].endswith(" broken=" + why), (label, lines)
    return a


def test_streams_broken_end_abnormally():
    si = StandIn()
    d = proxy_daemon(si, workers=1, upstream_timeout_s=TIMEOUT_S)
    d.start()
    for label, path, text, why, framing in CASES:
        check_cut(d, si, label, path, text, why, framing)
    # Every cut counted, by why; no key the worse for it.
    assert broken_counts(d) == {"reset": 3, "timeout": 2, "closed": 6,
                                "malformed": 2}, broken_counts(d)
    sd = status_data(d)
    for k in (K1, K2, K3):
        for m, cell in next(e for e in sd["keys"]
                            if e["masked"] == mask(k))["models"].items():
            assert cell["state"] == "available", (mask(k), m, cell)
    log = clean_log(d)
    assert "upstream answer cut short" in log and "why=malformed" in log
    assert d.stop() == 0


def test_streams_http10_cut_is_reset():
    """An HTTP/1.0 client of a stream gets no chunks: only the close
    frames its body, so a cut one ends with a reset, never a clean close;
    a whole one ends with a clean close."""
    si = StandIn()
    d = proxy_daemon(si, workers=1, upstream_timeout_s=TIMEOUT_S)
    d.start()
    c = RawClient(d.port, minor=0)
    a = c.ask(SSE, "whole STANDIN:chunks=3")
    c.close()
    assert a.status == 200 and a.end == "eof", a
    assert a.body.count(b"data: ") == 3, a
    for fault in ("close_midstream", "reset_midstream", "cut_chunk"):
        c = RawClient(d.port, minor=0)
        a = c.ask(SSE, "cut STANDIN:fault=%s STANDIN:chunks=4" % fault)
        c.close()
        assert a.status == 200 and a.end == "reset", (fault, a)
        assert "transfer-encoding" not in a.headers, a.headers
    assert sum(broken_counts(d).values()) == 3
    clean_log(d)
    assert d.stop() == 0
