"""Issue 10: the edges users hit, against the stand-in Gemini over TLS.

Quota-free calls with every key cooling or spent; Retry-After counting the
keys a request tried; max_attempts; a client that leaves (while waiting for
a key, for the answer's head, mid-stream); pool keys in every byte that
leaves, however the upstream writes them; bodies read only after the route
and the credentials; a big body's memory given back; log levels; Bearer
tokens with junk after them.
"""
import json
import signal
import socket
import time
import urllib.parse

import lib
from lib import wait_for
from standin import FLASH, K1, K2, K3, StandIn, proxy_daemon, mask
from test_proxy import (JSON, Stream, cell, err_of, finish, gbody, gen, hget,
                        key_entry, no_full_keys, status_data, upload_file)

GEN = "/v1beta/models/%s:generateContent"


def access_lines(d, path_part):
    return [l for l in d.log().splitlines()
            if " status=" in l and path_part in l]


def exhaust_all(d):
    """Every key spent for FLASH today."""
    st, h, raw = gen(d, FLASH, "spend it STANDIN:quota=rpd")
    assert st == 429, (st, raw[:300])
    sd = status_data(d)
    for k in (K1, K2, K3):
        assert cell(sd, k, FLASH)["state"] == "exhausted", cell(sd, k, FLASH)
    return h


# --------------------------------------------------------------------------
# §2 requests that cost no quota


def test_edges_quota_free_calls_never_refused_for_quota():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    exhaust_all(d)
    since = si.last_seq()
    calls = [
        ("GET", "/v1beta/models", None),
        ("GET", "/v1beta/models/" + FLASH, None),
        ("GET", "/v1/models/" + FLASH, None),
        ("GET", "/v1beta/openai/models", None),
        ("GET", "/v1beta/files", None),
        ("POST", "/v1beta/models/%s:countTokens" % FLASH, gbody("count me")),
    ]
    for method, path, body in calls:
        st, _, raw = d.request(method, path, body, dict(JSON))
        assert st == 200, (path, st, raw[:300])
    # A file upload, start and chunks, and reading the file back.
    _, url, f = upload_file(d, b"quota-free bytes\n" * 10)
    st, _, raw = d.request("GET", "/v1beta/" + f["name"])
    assert st == 200, (st, raw[:300])
    log = si.log(since)
    assert all(e["status"] == 200 for e in log), log
    assert len(log) == len(calls) + 3
    # Generation itself is still refused until the reset.
    st, h, raw = gen(d, FLASH, "not yet")
    assert st == 429 and int(hget(h, "Retry-After")) > 60, (st, h)
    finish(d)


def test_edges_quota_free_429_leaves_the_key_alone():
    """A 429 on a call that costs no quota (countTokens has a quota of its
    own) cools nothing: the next key is asked, and when every key says 429
    the client gets Google's answer."""
    si = StandIn()
    d = proxy_daemon(si, priority=[K1], secondary=[K2])
    d.start()
    since = si.last_seq()
    st, h, raw = d.request("POST", "/v1beta/models/%s:countTokens" % FLASH,
                           gbody("count me STANDIN:quota=rpm"), dict(JSON))
    assert st == 429, (st, raw[:300])
    assert "Quota exceeded" in err_of(raw)["message"], raw[:300]
    assert [e["key"] for e in si.log(since)] == [K1, K2]
    sd = status_data(d)
    for k in (K1, K2):
        c = cell(sd, k, FLASH)
        assert c is None or c["state"] == "available", (mask(k), c)
    assert gen(d, FLASH, "generation still flows")[0] == 200
    finish(d)


# --------------------------------------------------------------------------
# §3 Retry-After and max_attempts


def test_edges_retry_after_counts_the_keys_tried():
    si = StandIn()
    d = proxy_daemon(si, priority=[K1], secondary=[K2], max_attempts=1)
    d.start()
    # K1 cools 30 s; with one attempt the client hears of it at once,
    # and K2, untried, is free.
    st, h, raw = gen(d, FLASH, "K1 out STANDIN:quota=rpm "
                     "STANDIN:retry_ms=30000")
    assert st == 429, (st, raw[:300])
    assert int(hget(h, "Retry-After")) == 1, h
    sd = status_data(d)
    assert cell(sd, K1, FLASH)["state"] == "cooling"
    # K2, tried now, answers 20 s: the earliest key frees in 20 s.
    st, h, raw = gen(d, FLASH, "K2 out STANDIN:quota=rpm "
                     "STANDIN:retry_ms=20000")
    assert st == 429, (st, raw[:300])
    assert 19 <= int(hget(h, "Retry-After")) <= 21, h
    assert err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    finish(d)


def test_edges_max_attempts_caps_upstream_calls():
    si = StandIn()
    d = proxy_daemon(si, priority=[K1, K2], secondary=[K3], max_attempts=2)
    d.start()
    since = si.last_seq()
    st, h, raw = gen(d, FLASH, "all busy STANDIN:quota=rpm "
                     "STANDIN:retry_ms=50000")
    assert st == 429, (st, raw[:300])
    log = si.log(since)
    assert [e["key"] for e in log] == [K1, K2], [mask(e["key"]) for e in log]
    # K3 was never tried and is free: come back at once.
    assert int(hget(h, "Retry-After")) == 1, h
    assert "max_attempts" in err_of(raw)["message"]
    line = access_lines(d, ":generateContent")[-1]
    assert "attempts=2" in line, line
    finish(d)


# --------------------------------------------------------------------------
# §4 a client that leaves


def _standin_entry(si, since, pred, timeout=10):
    return wait_for(lambda: next((e for e in si.log(since) if pred(e)),
                                 None), timeout, "a stand-in entry")


def _gone_logged(d, path_part):
    return wait_for(lambda: [l for l in access_lines(d, path_part)
                             if " status=499 " in l], 5,
                    "an access line with status=499")


def _post(d, body):
    """A generateContent sent on a socket of our own, left open."""
    sock = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    sock.sendall(b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\n"
                 b"Host: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return sock


def test_edges_client_gone_while_the_answer_is_generated():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    body = gbody("think long STANDIN:sleep_ms=15000")
    sock = _post(d, body)
    e = _standin_entry(si, since, lambda e: e.get("kind") == "generate")
    assert e.get("completed") is None and e["key"] == K1, e
    t_close = time.time()
    sock.close()
    e = _standin_entry(si, since, lambda e: e.get("kind") == "generate" and
                       e.get("completed") is False)
    lag = e["ended"] - t_close
    print("    upstream closed %.0f ms after the client" % (lag * 1000))
    assert lag < 0.5, lag
    line = _gone_logged(d, ":generateContent")[-1]
    assert "key=%s" % key_entry(status_data(d), K1)["id"] in line, line
    # Sent: one request, counted at its estimate (no usage came back).
    sd = status_data(d)
    c = cell(sd, K1, FLASH)
    assert c["rpd_used"] == 1 and c["tpd_used"] >= len(body) // 4, c
    assert c["requests_today"] == 1, c
    finish(d)


def test_edges_client_gone_mid_stream():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    text = "stream slowly STANDIN:chunks=20 STANDIN:delay_ms=1000"
    s = Stream(d.port, "POST", "/v1beta/models/%s:streamGenerateContent"
               "?alt=sse" % FLASH, gbody(text), JSON)
    it = s.pieces_iter()
    _, first = next(it)
    assert b"usageMetadata" in first
    t_close = time.time()
    s.close()
    e = _standin_entry(si, since, lambda e: e.get("stream") and
                       e.get("completed") is False)
    lag = e["ended"] - t_close
    print("    stream stopped %.0f ms after the client left, after %d "
          "events" % (lag * 1000, e["events_sent"]))
    assert lag < 0.5 and e["events_sent"] <= 2, (lag, e)
    _gone_logged(d, ":streamGenerateContent")
    # Settled with what the stream had said: its (cumulative) input.
    sd = status_data(d)
    c = cell(sd, K1, FLASH)
    assert c["tokens_today"]["prompt"] == e["prompt"], (c, e)
    assert c["requests_today"] == 1
    finish(d)


def _waiting(sd):
    """Is a worker waiting for a key (or the upstream) on a request?"""
    def walk(o):
        if isinstance(o, dict):
            if o.get("state") == "upstream" and ":generateContent" in \
                    str(o.get("request", "")):
                return True
            return any(walk(v) for v in o.values())
        if isinstance(o, list):
            return any(walk(v) for v in o)
        return False
    return walk(sd)


def test_edges_client_gone_while_waiting_for_a_key():
    si = StandIn()
    models = {FLASH: {"tpm_limit": None, "tpd_limit": None, "rpm_limit": 1}}
    # The minute frees in up to 60 s: the request may wait for it.
    d = proxy_daemon(si, priority=[K1], secondary=[], models=models,
                     max_wait_s=120)
    d.start()
    assert gen(d, FLASH, "fills the minute")[0] == 200
    since = si.last_seq()
    sock = _post(d, gbody("waits"))
    wait_for(lambda: _waiting(status_data(d)), 5, "a worker waiting")
    t_close = time.monotonic()
    sock.close()
    _gone_logged(d, ":generateContent")
    assert time.monotonic() - t_close < 2
    assert si.log(since) == []
    sd = status_data(d)
    assert cell(sd, K1, FLASH)["requests_today"] == 1
    finish(d)


# --------------------------------------------------------------------------
# §5 no pool key in any byte that leaves

def _decoded_forms(raw):
    """The text as it stands, JSON-decoded where it parses, and
    percent-decoded: a key must be in none of them."""
    t = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    out = [t, urllib.parse.unquote(t)]
    try:
        out.append(json.dumps(json.loads(t), ensure_ascii=False))
    except ValueError:
        pass
    return out


def test_edges_keys_masked_in_every_byte():
    si = StandIn({"upload_url_key": True})
    d = proxy_daemon(si, priority=[K1], secondary=[])
    d.start()
    seen = []
    for how in ("glued", "escaped"):
        st, h, raw = gen(d, FLASH, "STANDIN:status=400 STANDIN:echo_key=" +
                         how)
        assert st == 400, (how, st, raw[:300])
        err = err_of(raw)       # still valid JSON
        assert mask(K1) in err["message"], (how, err)
        seen += _decoded_forms(raw) + [json.dumps(h)]
    assert "AIza\u2026k001_x AIza\u2026k001-y AIza\u2026k0010 xAIza\u2026k001" \
        in err_of(gen(d, FLASH, "STANDIN:status=400 STANDIN:echo_key=glued")[2]
                  )["message"]
    # Headers, of errors and of good answers.
    for text in ("STANDIN:status=400 STANDIN:echo_key=header",
                 "fine STANDIN:echo_key=header"):
        st, h, raw = gen(d, FLASH, text)
        # (http.client reads header bytes as Latin-1)
        m = mask(K1).encode().decode("latin-1")
        assert hget(h, "X-Debug-Key") == m, h
        assert hget(h, "X-Escaped") == m, h
        assert "key=" + m in hget(h, "Link"), h
        seen += [json.dumps(h), urllib.parse.unquote(json.dumps(h))]
    # A body over 64 KiB with the key across the cut: never relayed.
    st, h, raw = gen(d, FLASH, "STANDIN:status=400 STANDIN:echo_key=long")
    assert st == 400, (st, raw[:200])
    err = err_of(raw)
    assert err["code"] == 400 and "64 KiB" in err["message"], err
    assert int(hget(h, "Content-Length")) == len(raw) < 1024
    seen += [raw]
    for k in range(20, 39):
        assert K1[:k].encode() not in raw, k
    # The upload URL without key=, and the upload still works.
    rh, url, f = upload_file(d, b"x" * 100)
    assert "key=" not in urllib.parse.urlsplit(url).query, url
    assert f["state"] == "ACTIVE"
    seen += [json.dumps(rh)]
    no_full_keys(*seen)
    finish(d)


# --------------------------------------------------------------------------
# §6 bodies only after the route and the credentials

def _head_only(sock, timeout=5):
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        b = sock.recv(4096)
        if not b:
            break
        data += b
    return data


def test_edges_no_body_read_before_route_and_credentials():
    si = StandIn()
    d = proxy_daemon(si, access_tokens=["tok-edges-123"],
                     admin_token="adm-edges-456", client_timeout_s=30,
                     workers=4)
    d.start()
    cases = [
        (b"POST /nope HTTP/1.1", b"", 404),
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1", b"", 401),
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1",
         b"x-goog-api-key: wrong\r\n", 401),
        (b"POST /healthz HTTP/1.1", b"", 405),
        (b"POST /api/test_key HTTP/1.1", b"", 401),
        (b"POST /api/status_data HTTP/1.1",
         b"Authorization: Bearer adm-edges-456\r\n", 405),
    ]
    for line, extra, code in cases:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(line + b"\r\nHost: x\r\n" + extra + b"Expect: 100-continue"
                  b"\r\nContent-Length: 100000\r\n\r\n")
        head = _head_only(s)
        s.close()
        assert head.startswith(b"HTTP/1.1 %d " % code), (line, head[:200])
        assert b"\r\nConnection: close\r\n" in head, head
    # A request that will be served gets its 100 Continue.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    body = gbody("hello")
    s.sendall(b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"x-goog-api-key: tok-edges-123\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    assert _head_only(s).startswith(b"HTTP/1.1 100 Continue"), "no 100"
    s.sendall(body)
    assert _head_only(s).startswith(b"HTTP/1.1 200 ")
    s.close()

    # 24 unauthenticated clients sending 100 kB slowly: each hears 401 at
    # once, and a client with the token is served meanwhile.
    slow = []
    t0 = time.monotonic()
    for _ in range(24):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\n"
                  b"Host: x\r\nContent-Length: 100000\r\n\r\n" + b"{" * 10)
        slow.append(s)
    for s in slow:
        assert _head_only(s).startswith(b"HTTP/1.1 401 ")
        try:
            s.sendall(b"{" * 1000)
        except OSError:
            pass
    st, _, raw = gen(d, FLASH, "served meanwhile",
                     headers={"x-goog-api-key": "tok-edges-123"})
    assert st == 200, (st, raw[:200])
    took = time.monotonic() - t0
    print("    24 refused and one served in %.2f s" % took)
    assert took < 5, took
    for s in slow:
        s.close()
    finish(d)


# --------------------------------------------------------------------------
# §7 a big body's memory goes back


def _rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def test_edges_big_body_memory_given_back():
    # The build without sanitizers: ASan keeps freed memory in quarantine.
    d = lib.Daemon(workers=1, max_body_bytes=64 * 1024 * 1024,
                   client_timeout_s=3, bin=lib.PLAIN_BIN)
    d.start()
    w = wait_for(lambda: len(d.workers()) == 1 and d.workers())[0]
    _healthy = lambda: d.request("GET", "/healthz")[0] == 200  # noqa: E731
    assert _healthy()
    base = _rss_anon_kb(w)
    big = 30 * 1024 * 1024
    cases = [
        # Connection: close, proxied (the upstream is unreachable: 502).
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\nHost: x\r\n"
         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % big,
         b"{" * big, 502),
        # A chunked body over max_body_bytes: 413 after 64 MiB were read.
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n",
         (b"100000\r\n" + b"c" * 0x100000 + b"\r\n") * 65, 413),
        # A malformed chunked body after 30 MiB: 400.
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n",
         (b"100000\r\n" + b"c" * 0x100000 + b"\r\n") * 30 + b"zz\r\n", 400),
        # A body that stops arriving: 408.
        (b"POST " + (GEN % FLASH).encode() + b" HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: %d\r\n\r\n" % (big + 1), b"{" * big, 408),
    ]
    for head, body, code in cases:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            s.sendall(head)
            try:
                s.sendall(body)
            except OSError:
                pass
            got = _head_only(s, timeout=10)
        finally:
            s.close()
        assert got.startswith(b"HTTP/1.1 %d " % code), (code, got[:200])
        assert _healthy()
        grew = _rss_anon_kb(w) - base
        print("    after a %d: the worker holds %d KiB more" % (code, grew))
        assert grew < 4096, (code, grew)
    assert d.stop() == 0


# --------------------------------------------------------------------------
# §8 smaller things


def _generation(d):
    st, _, raw = d.request("GET", "/api/status_data")
    return json.loads(raw)["config_generation"]


def test_edges_log_level_warn_is_not_error():
    """log_level warn writes warnings; error does not; both write
    errors."""
    for level, shown in (("warn", True), ("error", False)):
        d = lib.Daemon(log_level=level)
        d.start()
        gen0 = _generation(d)
        cfg = dict(d.cfg, bogus_field_for_a_warning=1)
        d.write_config(cfg)
        d.signal(signal.SIGHUP)
        wait_for(lambda: _generation(d) > gen0, 10, "the reload")
        d.write_config(raw="{ not json")
        d.signal(signal.SIGHUP)
        d.wait_log("reload failed")
        lines = d.log().splitlines()
        warn = [l for l in lines if "unknown field" in l]
        assert bool(warn) == shown, (level, lines)
        if shown:
            assert " warn: " in warn[0], warn
        err = [l for l in lines if "reload failed" in l]
        assert " error: " in err[0], err
        assert d.stop() == 0


def test_edges_bearer_with_junk_is_refused():
    si = StandIn()
    d = proxy_daemon(si, access_tokens=["tok-edges-123"],
                     admin_token="adm-edges-456")
    d.start()
    for auth, code in (("Bearer adm-edges-456", 200),
                       ("Bearer  adm-edges-456 ", 200),
                       ("bearer adm-edges-456", 200),
                       ("Bearer adm-edges-456 junk", 401),
                       ("Bearer adm-edges-456,junk", 401),
                       ("Bearer", 401), ("Bearer ", 401)):
        st, _, _ = d.request("GET", "/api/status_data",
                             headers={"Authorization": auth})
        assert st == code, (auth, st)
    for auth, code in (("Bearer tok-edges-123", 200),
                       ("Bearer tok-edges-123 junk", 401)):
        st, _, raw = gen(d, FLASH, "hi", headers={"Authorization": auth})
        assert st == code, (auth, st, raw[:200])
    finish(d)
