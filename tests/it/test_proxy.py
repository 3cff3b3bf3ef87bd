"""Issue 3: the proxy path against the stand-in Gemini server over TLS.

Key selection (priority, sticky, rotation on quota 429s, invalid keys),
throttling, streaming relay, exact token accounting, files affinity,
/api/status_data, /api/test_key, admin_token, and no full key anywhere.

Every test starts its own stand-in and daemon. Synchronisation is by polling
(/api/status_data or the stand-in's log) with wait_for(); the only timed
waits are the ones whose point is that nothing happens in that time.
"""
import concurrent.futures
import datetime
import json
import math
import os
import re
import socket
import struct
import threading
import time
import urllib.parse

import lib
from lib import wait_for
from standin import (FLASH, PRO, K1, K2, K3, KINV, KSUS, KBLK, KLEAK,
                     KT_OK, KT_QUOTA, KT_UNKNOWN, ALL_KEYS, StandIn,
                     proxy_daemon, mask, wire)

DUMMY = "AIzaSyClientDummyKeyThatMustNotBeSent0000"
JSON = {"Content-Type": "application/json"}
GEN_KINDS = ("generate", "stream", "openai_chat")

# --------------------------------------------------------------------------
# helpers


def gbody(text, extra_parts=None):
    parts = [{"text": text}] + list(extra_parts or [])
    return json.dumps({"contents": [{"role": "user", "parts": parts}]}
                      ).encode()


def tokens(text):
    return max(1, math.ceil(len(text.encode()) / 4))


def gen(d, model=FLASH, text="Hello there", headers=None, ver="v1beta",
        query="", extra_parts=None, timeout=20):
    """POST :generateContent through the proxy: (status, headers, raw)."""
    h = dict(JSON)
    h.update(headers or {})
    path = "/%s/models/%s:generateContent%s" % (ver, model, query)
    return d.request("POST", path, gbody(text, extra_parts), h,
                     timeout=timeout)


def hget(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def err_of(raw):
    obj = json.loads(raw)
    if isinstance(obj, list):
        obj = obj[0]
    return obj["error"]


def status_data(d, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    st, _, raw = d.request("GET", "/api/status_data", headers=h)
    assert st == 200, (st, raw[:300])
    return json.loads(raw)


def key_entry(sd, key):
    found = [k for k in sd["keys"] if k.get("masked") == mask(key)]
    assert len(found) == 1, "key %s in status_data: %r" % (mask(key), found)
    return found[0]


def kid(sd, key):
    return key_entry(sd, key)["id"]


def cell(sd, key, model):
    return key_entry(sd, key)["models"].get(model)


def counts_of(sd, key, model):
    c = cell(sd, key, model)
    if c is None:
        return None
    t = c["tokens_today"]
    return (c["requests_today"], t["prompt"], t["candidates"], t["total"])


def served(entries):
    """(key, model) -> (requests, prompt, candidates, total) of the
    successful generation requests in stand-in log entries."""
    out = {}
    for e in entries:
        if e["status"] == 200 and e.get("kind") in GEN_KINDS:
            r = out.setdefault((e["key"], e["model"]), [0, 0, 0, 0])
            r[0] += 1
            r[1] += e["prompt"]
            r[2] += e["candidates"]
            r[3] += e["total"]
    return {k: tuple(v) for k, v in out.items()}


def wait_counts(d, expected, timeout=1.5):
    """Wait until /api/status_data shows exactly the expected
    (requests, prompt, candidates, total) per (key, model)."""
    last = {}

    def ok():
        sd = status_data(d)
        for (k, m) in expected:
            last[(mask(k), m)] = counts_of(sd, k, m)
        return all(last[(mask(k), m)] == v for (k, m), v in expected.items())
    try:
        wait_for(ok, timeout, "status_data counts")
    except AssertionError:
        raise AssertionError("status_data counts: expected %r, got %r" % (
            {(mask(k), m): v for (k, m), v in expected.items()}, last))


def wait_entries(si, since, n, timeout=10):
    """Wait until the stand-in has logged at least n entries after since."""
    return wait_for(lambda: (lambda l: l if len(l) >= n else None)(
        si.log(since)), timeout, "%d stand-in log entries" % n)


def no_full_keys(*texts, extra=()):
    for t in texts:
        if isinstance(t, (bytes, bytearray)):
            t = bytes(t).decode("utf-8", "replace")
        elif not isinstance(t, str):
            t = json.dumps(t, ensure_ascii=False)
        for k in list(ALL_KEYS) + list(lib.KEYS) + list(extra):
            assert k not in t, "full key %s found in %r" % (
                mask(k), t[max(0, t.find(k) - 200):t.find(k) + 60])


def finish(d, *texts):
    """End of every test: no full key in the daemon log (or in texts)."""
    no_full_keys(d.log(), *texts)


# A raw HTTP/1.1 client that records when each piece of the body arrives.

class Stream:
    def __init__(self, port, method, path, body=b"", headers=None,
                 timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        h = {"Host": "127.0.0.1:%d" % port, "Content-Length": str(len(body)),
             "Connection": "close"}
        h.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
            "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        self.t0 = time.monotonic()
        self.sock.sendall(head.encode() + body)
        self.buf = bytearray()
        self.t = None
        self.pieces = []        # (arrival time, de-chunked bytes)
        line = self._until(b"\r\n").decode()
        self.status = int(line.split()[1])
        self.headers = {}
        while True:
            line = self._until(b"\r\n").decode()
            if not line:
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError
        self.buf += b
        self.t = time.monotonic()

    def _until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def pieces_iter(self):
        """Yields (time, bytes) as the body arrives."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    return
                data = self._exact(size)
                self._exact(2)
                yield self.t, data
        n = self.headers.get("content-length")
        left = int(n) if n is not None else None
        while left is None or left > 0:
            if not self.buf:
                try:
                    self._fill()
                except EOFError:
                    if left is None:
                        return
                    raise
            data = bytes(self.buf if left is None else self.buf[:left])
            del self.buf[:len(data)]
            if left is not None:
                left -= len(data)
            yield self.t, data

    def read_all(self):
        for t, data in self.pieces_iter():
            self.pieces.append((t, data))
        self.close()
        return self.body

    @property
    def body(self):
        return b"".join(p for _, p in self.pieces)

    def arrival(self, offset):
        """When the body's first offset bytes had all arrived."""
        n = 0
        for t, p in self.pieces:
            n += len(p)
            if n >= offset:
                return t
        raise AssertionError("body shorter than %d" % offset)

    def close(self, reset=False):
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        self.sock.close()


def sse_ends(body):
    """Offsets just past each \\r\\n\\r\\n event terminator."""
    out, i = [], 0
    while True:
        j = body.find(b"\r\n\r\n", i)
        if j < 0:
            return out
        out.append(j + 4)
        i = j + 4


def upload_file(d_or_si, payload, headers=None, via_proxy=True):
    """Resumable upload (start, then upload+finalize). Returns
    (start headers, upload url, file resource)."""
    h = {"X-Goog-Upload-Protocol": "resumable",
         "X-Goog-Upload-Command": "start",
         "X-Goog-Upload-Header-Content-Length": str(len(payload)),
         "X-Goog-Upload-Header-Content-Type": "text/plain",
         "Content-Type": "application/json"}
    h.update(headers or {})
    st, rh, raw = d_or_si.request(
        "POST", "/upload/v1beta/files",
        json.dumps({"file": {"display_name": "it-file"}}).encode(), h)
    assert st == 200, (st, raw[:300])
    url = hget(rh, "x-goog-upload-url")
    assert url, rh
    u = urllib.parse.urlsplit(url)
    h2 = {"X-Goog-Upload-Command": "upload, finalize",
          "X-Goog-Upload-Offset": "0", "Content-Type": "text/plain"}
    if not via_proxy:
        h2["x-goog-api-key"] = h["x-goog-api-key"]
    st, _, raw = d_or_si.request("POST", u.path + "?" + u.query, payload, h2)
    assert st == 200, (st, raw[:300])
    return rh, url, json.loads(raw)["file"]


# --------------------------------------------------------------------------
# routing and credentials


def test_proxy_generate_uses_pool_key_v1beta_and_v1():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    cases = [("v1beta", {}, ""), ("v1", {}, ""),
             ("v1beta", {"x-goog-api-key": DUMMY}, ""),
             ("v1", {"x-goog-api-key": DUMMY}, ""),
             ("v1beta", {}, "?key=" + DUMMY),
             ("v1", {}, "?key=" + DUMMY),
             ("v1beta", {"x-goog-api-key": DUMMY}, "?key=" + DUMMY)]
    seen = []
    for i, (ver, hdrs, q) in enumerate(cases):
        text = "Relay check number %d%s STANDIN:candidates=%d" % (
            i, "!" * i, 5 + i)
        since = si.last_seq()
        st, h, raw = gen(d, FLASH, text, hdrs, ver, q)
        assert st == 200, (ver, hdrs, q, st, raw[:300])
        entries = si.log(since)
        assert len(entries) == 1, entries
        e = entries[0]
        # A pool key, as x-goog-api-key, and nothing of the client's.
        assert e["key"] == K1, (mask(e["key"] or "-"), ver, hdrs, q)
        assert e["key_source"] == "header"
        assert e["credentials"] == {"header": K1}, e["credentials"]
        assert e["path"] == "/%s/models/%s:generateContent" % (ver, FLASH)
        assert e["model"] == FLASH
        assert e["host"] == "localhost:%d" % si.port, e["host"]
        # The answer is relayed unchanged, byte for byte.
        obj = json.loads(raw)
        assert raw == (wire.pretty(obj) + "\n").encode(), raw[:300]
        assert "json" in (hget(h, "content-type") or "")
        u = obj["usageMetadata"]
        assert u["promptTokenCount"] == e["prompt"] == tokens(text)
        assert u["candidatesTokenCount"] == e["candidates"] == 5 + i
        assert u["totalTokenCount"] == e["total"]
        assert obj["candidates"][0]["content"]["parts"][0]["text"]
        seen.append(e)
    wait_counts(d, served(seen))
    assert DUMMY not in json.dumps(si.log())
    finish(d)


def test_proxy_other_endpoints_pass_through():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    st, _, raw = d.request("GET", "/v1beta/models",
                           headers={"x-goog-api-key": DUMMY})
    assert st == 200 and any(m["name"] == "models/" + FLASH
                             for m in json.loads(raw)["models"]), raw[:200]
    st, _, raw = d.request("GET", "/v1/models/" + PRO)
    assert st == 200 and json.loads(raw)["name"] == "models/" + PRO
    st, _, raw = d.request("POST", "/v1beta/models/%s:countTokens" % FLASH,
                           gbody("count these tokens please"), JSON)
    assert st == 200 and json.loads(raw)["totalTokens"] == \
        tokens("count these tokens please"), raw
    st, _, raw = d.request(
        "POST", "/v1beta/models/gemini-embedding-001:embedContent",
        json.dumps({"content": {"parts": [{"text": "embed me"}]}}).encode(),
        JSON)
    assert st == 200 and len(json.loads(raw)["embedding"]["values"]) > 0
    # An unknown route upstream: the upstream's 404 reaches the client.
    st, _, raw = d.request("GET", "/v1beta/nothing/here")
    assert st == 404 and err_of(raw)["code"] == 404
    entries = si.log(since)
    assert len(entries) == 5, entries
    for e in entries:
        assert e["credentials"] == {"header": K1}, (e["path"],
                                                    e["credentials"])
    finish(d)


def test_proxy_access_tokens():
    si = StandIn()
    tok, tok2 = "looper-access-token-0123456789", "second-token-abcdef"
    d = proxy_daemon(si, access_tokens=[tok, tok2])
    d.start()
    since = si.last_seq()
    bad = [({}, ""), ({"x-goog-api-key": "wrong-token"}, ""),
           ({}, "?key=wrong-token"),
           ({"Authorization": "Bearer wrong-token"}, ""),
           ({"x-goog-api-key": DUMMY}, "")]
    for hdrs, q in bad:
        st, _, raw = gen(d, headers=hdrs, query=q)
        assert st == 401, (hdrs, q, st, raw[:200])
        err = err_of(raw)
        assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED", err
        assert err["message"], err
    # Nothing went upstream for them.
    assert si.log(since) == []
    good = [({"x-goog-api-key": tok}, ""), ({}, "?key=" + tok),
            ({"Authorization": "Bearer " + tok}, ""),
            ({"x-goog-api-key": tok2}, ""),
            ({"Authorization": "Bearer " + tok2}, "")]
    for i, (hdrs, q) in enumerate(good):
        st, _, raw = gen(d, text="token ok %d" % i, headers=hdrs, query=q,
                         ver="v1" if i % 2 else "v1beta")
        assert st == 200, (hdrs, q, st, raw[:200])
    # OpenAI-compatible path, token as Bearer.
    st, _, raw = d.request(
        "POST", "/v1beta/openai/chat/completions",
        json.dumps({"model": FLASH, "messages": [
            {"role": "user", "content": "hi"}]}).encode(),
        dict(JSON, Authorization="Bearer " + tok))
    assert st == 200, raw[:200]
    st, _, raw = d.request(
        "POST", "/v1beta/openai/chat/completions",
        json.dumps({"model": FLASH, "messages": [
            {"role": "user", "content": "hi"}]}).encode(),
        dict(JSON, Authorization="Bearer nope"))
    assert st == 401, raw[:200]
    entries = si.log(since)
    assert len(entries) == len(good) + 1
    for e in entries[:-1]:
        assert e["credentials"] == {"header": K1}, e["credentials"]
    assert entries[-1]["credentials"] == {"bearer": K1}
    logtext = json.dumps(entries)
    assert tok not in logtext and tok2 not in logtext
    finish(d)


def test_proxy_openai_chat_completions():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    text = "Say hello, OpenAI style STANDIN:candidates=7"
    st, h, raw = d.request(
        "POST", "/v1beta/openai/chat/completions",
        json.dumps({"model": FLASH, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text}]}).encode(),
        dict(JSON, Authorization="Bearer " + DUMMY))
    assert st == 200, raw[:300]
    obj = json.loads(raw)
    e = si.log(since)[0]
    assert e["key"] == K1 and e["key_source"] == "bearer"
    assert e["credentials"] == {"bearer": K1}, e["credentials"]
    assert e["model"] == FLASH and e["kind"] == "openai_chat"
    assert obj["usage"]["prompt_tokens"] == e["prompt"]
    assert obj["usage"]["completion_tokens"] == 7 == e["candidates"]
    assert obj["usage"]["total_tokens"] == e["total"]
    # Streaming: the usage of the last chunk counts.
    s = Stream(d.port, "POST", "/v1beta/openai/chat/completions",
               json.dumps({"model": PRO, "stream": True, "messages": [
                   {"role": "user",
                    "content": "stream it STANDIN:chunks=4 "
                               "STANDIN:candidates=40"}]}).encode(),
               dict(JSON, Authorization="Bearer " + DUMMY))
    assert s.status == 200
    body = s.read_all()
    assert b"data: [DONE]" in body, body[-200:]
    entries = si.log(since)
    assert len(entries) == 2, entries
    assert entries[1]["model"] == PRO and entries[1]["credentials"] == \
        {"bearer": K1}
    wait_counts(d, served(entries))
    finish(d)


# --------------------------------------------------------------------------
# choosing a key


def test_proxy_priority_then_sticky_then_rotation_on_minute_429():
    si = StandIn({"projects": {"p2": {"quotas": {FLASH: {"rpm": 2}}},
                               "p3": {"quotas": {FLASH: {"rpm": 1}}}}})
    # K1 is secondary, listed first in the file: priority keys still win.
    d = proxy_daemon(si, priority=[K2, K3], secondary=[K1])
    d.start()
    since = si.last_seq()
    for i in range(2):
        st, _, raw = gen(d, FLASH, "sticky %d" % i)
        assert st == 200, raw[:300]
    log = si.log(since)
    assert [e["key"] for e in log] == [K2, K2], [mask(e["key"]) for e in log]
    sd = status_data(d)
    assert sd["current_keys"][FLASH] == kid(sd, K2)
    assert key_entry(sd, K2)["tier"] == "priority"
    assert key_entry(sd, K1)["tier"] == "secondary"

    # Third request: K2's project is out of requests per minute. The
    # client sees 200, served by the next priority key.
    since = si.last_seq()
    st, _, raw = gen(d, FLASH, "rotate me")
    assert st == 200, raw[:300]
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == [(K2, 429), (K3, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]
    sd = status_data(d)
    c = cell(sd, K2, FLASH)
    assert c["state"] == "cooling" and c["cooldown_until"], c
    assert key_entry(sd, K2)["state"] == "cooling"
    assert sd["current_keys"][FLASH] == kid(sd, K3)

    # K3's project allows one per minute: the next one rotates to the
    # secondary key, and then stays there.
    since = si.last_seq()
    for i in range(3):
        st, _, raw = gen(d, FLASH, "after rotation %d" % i)
        assert st == 200, raw[:300]
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(K3, 429), (K1, 200), (K1, 200), (K1, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]

    # Cooling is per key x model: K2 still serves gemini-2.5-pro.
    since = si.last_seq()
    st, _, raw = gen(d, PRO, "pro on K2")
    assert st == 200
    assert [e["key"] for e in si.log(since)] == [K2]
    sd = status_data(d)
    assert cell(sd, K2, PRO)["state"] == "available"
    assert sd["current_keys"][PRO] == kid(sd, K2)
    assert sd["current_keys"][FLASH] == kid(sd, K1)
    finish(d)


def test_proxy_sticky_key_kept_after_earlier_key_recovers():
    # Sticky, not "first free key by priority": once a model moved to K2 it
    # stays there even when K1 can serve again (Gemini's implicit cache
    # lives in K2's project now).
    si = StandIn({"projects": {"p1": {"quotas": {FLASH: {"rpm": 1}}}}})
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    assert gen(d, FLASH, "on K1")[0] == 200
    assert gen(d, FLASH, "cools K1 for a second STANDIN:retry_ms=1000"
               )[0] == 200
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(K1, 200), (K1, 429), (K2, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]
    si.config({"projects": {"p1": None}})
    si.reset_minute()
    wait_for(lambda: cell(status_data(d), K1, FLASH)["state"] ==
             "available", 5, "K1 to cool down")
    since = si.last_seq()
    for i in range(3):
        assert gen(d, FLASH, "still sticky %d" % i)[0] == 200
    assert [e["key"] for e in si.log(since)] == [K2, K2, K2], \
        [mask(e["key"]) for e in si.log(since)]
    sd = status_data(d)
    assert sd["current_keys"][FLASH] == kid(sd, K2)
    # A model never served starts on the first priority key.
    since = si.last_seq()
    assert gen(d, PRO, "fresh model")[0] == 200
    assert [e["key"] for e in si.log(since)] == [K1]
    finish(d)


def test_proxy_day_429_exhausts_key_for_that_model_only():
    si = StandIn({"projects": {"p1": {"quotas": {FLASH: {"rpd": 1}}}}})
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    st, _, _ = gen(d, FLASH, "first of the day")
    assert st == 200
    st, _, raw = gen(d, FLASH, "second of the day")
    assert st == 200, raw[:300]
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(K1, 200), (K1, 429), (K2, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]
    # The per-day 429 carries a short retryDelay; quotaId decides.
    assert log[1]["quota"] == ["rpd"] and log[1]["retry_delay"] == "22s"
    sd = status_data(d)
    assert cell(sd, K1, FLASH)["state"] == "exhausted", cell(sd, K1, FLASH)
    assert key_entry(sd, K1)["state"] == "exhausted"
    assert cell(sd, K1, PRO)["state"] == "available"
    assert sd["current_keys"][FLASH] == kid(sd, K2)
    since = si.last_seq()
    st, _, _ = gen(d, PRO, "pro still on K1")
    assert st == 200
    st, _, _ = gen(d, FLASH, "flash stays on K2")
    assert st == 200
    assert [e["key"] for e in si.log(since)] == [K1, K2]
    finish(d)


def test_proxy_every_key_cooling_429_with_retry_after():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    # Every key's project answers a per-minute quota 429 (retryDelay 37s).
    st, h, raw = gen(d, FLASH, "too much STANDIN:quota=rpm")
    assert st == 429, (st, raw[:300])
    assert err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    log = si.log(since)
    assert sorted(e["key"] for e in log) == sorted([K1, K2, K3]), \
        [mask(e["key"]) for e in log]
    assert all(e["status"] == 429 for e in log)
    sd = status_data(d)
    for k in (K1, K2, K3):
        assert cell(sd, k, FLASH)["state"] == "cooling", cell(sd, k, FLASH)
    assert sd["current_keys"].get(FLASH) is None
    # Now no key can serve the model: the proxy answers at once.
    since = si.last_seq()
    t0 = time.monotonic()
    st, h, raw = gen(d, FLASH, "anyone?")
    assert st == 429, (st, raw[:300])
    assert time.monotonic() - t0 < 3.0
    err = err_of(raw)
    assert err["code"] == 429 and err["status"] == "RESOURCE_EXHAUSTED", err
    ra = hget(h, "retry-after")
    assert ra is not None and re.fullmatch(r"[0-9]+", ra), h
    assert 30 <= int(ra) <= 38, ra
    assert si.log(since) == []
    # Other models are not affected.
    st, _, _ = gen(d, PRO, "pro is fine")
    assert st == 200
    finish(d)


def test_proxy_every_key_exhausted_retry_after_is_next_reset():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    st, _, raw = gen(d, FLASH, "daily STANDIN:quota=rpd")
    assert st == 429, (st, raw[:300])
    sd = status_data(d)
    for k in (K1, K2, K3):
        assert cell(sd, k, FLASH)["state"] == "exhausted"
    since = si.last_seq()
    st, h, raw = gen(d, FLASH, "anyone left?")
    assert st == 429 and err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    assert si.log(since) == []
    ra = int(hget(h, "retry-after"))
    # The config says reset_after "00:00", timezone UTC: the next reset is
    # the coming midnight UTC.
    now = datetime.datetime.now(datetime.timezone.utc)
    reset = (now + datetime.timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    want = (reset - now).total_seconds()
    assert abs(ra - want) <= 90, (ra, want)
    finish(d)


def test_proxy_invalid_key_marked_and_skipped():
    si = StandIn()
    d = proxy_daemon(si, priority=[KINV, K1], secondary=[K2])
    d.start()
    since = si.last_seq()
    st, _, raw = gen(d, FLASH, "first")
    assert st == 200, raw[:300]
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == [(KINV, 400), (K1, 200)]
    sd = status_data(d)
    assert key_entry(sd, KINV)["state"] == "invalid"
    assert key_entry(sd, K1)["state"] == "available"
    # Invalid for every model: never tried again.
    since = si.last_seq()
    for m in (PRO, FLASH, "gemini-2.0-flash"):
        st, _, _ = gen(d, m, "after invalid")
        assert st == 200
    assert [e["key"] for e in si.log(since)] == [K1, K1, K1]
    finish(d)


def test_proxy_key_403s_mark_invalid_and_full_key_never_shown():
    si = StandIn()
    d = proxy_daemon(si, priority=[KSUS, KBLK, KLEAK], secondary=[K1])
    d.start()
    seen = []
    since = si.last_seq()
    st, h, raw = gen(d, FLASH, "suspended first")
    seen += [raw, json.dumps(h)]
    assert st == 200, raw[:300]
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(KSUS, 403), (KBLK, 403), (KLEAK, 403), (K1, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]
    st, h, raw = gen(d, PRO, "and another")
    seen += [raw, json.dumps(h)]
    assert st == 200
    assert [e["key"] for e in si.log(log[-1]["seq"])] == [K1]
    st, _, raw = d.request("GET", "/api/status_data")
    seen.append(raw)
    sd = json.loads(raw)
    for k in (KSUS, KBLK, KLEAK):
        assert key_entry(sd, k)["state"] == "invalid", key_entry(sd, k)
    st, _, raw = d.request("GET", "/metrics")
    seen.append(raw)
    no_full_keys(*seen)
    finish(d)
    assert d.stop() == 0
    # (Whether the usage file is written is tested with the daemon core.)
    if os.path.exists(os.path.join(d.dir, "key_usage.json")):
        with open(os.path.join(d.dir, "key_usage.json")) as f:
            no_full_keys(f.read())
    finish(d)


def test_proxy_echoed_pool_key_masked_in_passed_through_error():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    seen = []
    for ver in ("v1beta", "v1"):
        st, h, raw = gen(d, FLASH, "bad argument STANDIN:status=400 "
                         "STANDIN:echo_key=1", ver=ver)
        seen += [raw, json.dumps(h)]
        # A 400 that is not about the key: passed through, key masked.
        assert st == 400, (st, raw[:300])
        err = err_of(raw)
        assert err["status"] == "INVALID_ARGUMENT"
        assert "Consumer 'api_key:" in err["message"], err
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == [(K1, 400), (K1, 400)]
    sd = status_data(d)
    assert key_entry(sd, K1)["state"] == "available"
    no_full_keys(*seen)
    finish(d)


def test_proxy_every_key_invalid_503():
    si = StandIn()
    d = proxy_daemon(si, priority=[KINV], secondary=[KSUS])
    d.start()
    st, h, raw = gen(d, FLASH, "nobody")
    assert st == 503, (st, raw[:300])
    err = err_of(raw)
    assert err["code"] == 503 and err["status"] == "UNAVAILABLE", err
    assert "invalid" in err["message"].lower(), err
    since = si.last_seq()
    st, h2, raw2 = gen(d, PRO, "still nobody")
    assert st == 503 and err_of(raw2)["status"] == "UNAVAILABLE"
    assert si.log(since) == []
    finish(d, raw, raw2, json.dumps(h), json.dumps(h2))


def test_proxy_403_not_about_the_key_passed_through():
    si = StandIn()
    # A file of project p2, made straight at the stand-in.
    _, _, f = upload_file(si, b"not yours", {"x-goog-api-key": K2},
                          via_proxy=False)
    fid = f["name"].split("/", 1)[1]
    d = proxy_daemon(si, priority=[K1, K3], secondary=[K2])
    d.start()
    since = si.last_seq()
    st, _, raw = gen(d, FLASH, "describe the file", extra_parts=[
        {"fileData": {"mimeType": "text/plain", "fileUri": f["uri"]}}])
    assert st == 403, (st, raw[:300])
    err = err_of(raw)
    assert err["status"] == "PERMISSION_DENIED" and fid in err["message"]
    assert raw == (wire.pretty(json.loads(raw)) + "\n").encode()
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == [(K1, 403)]
    sd = status_data(d)
    assert key_entry(sd, K1)["state"] == "available"
    assert cell(sd, K1, FLASH)["state"] == "available"
    since = si.last_seq()
    st, _, _ = gen(d, FLASH, "plain")
    assert st == 200 and [e["key"] for e in si.log(since)] == [K1]
    finish(d)


def test_proxy_5xx_retried_once_on_another_key_not_marked():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    for magic, fault in (("STANDIN:status=503", False),
                         ("STANDIN:status=500", False),
                         ("STANDIN:fault=close_before_headers", True)):
        since = si.last_seq()
        st, _, raw = gen(d, FLASH, "overloaded? " + magic)
        assert st >= 500, (magic, st, raw[:300])
        if not fault:
            assert st == int(magic[-3:]), (magic, st)
        # Every attempt was logged before the client got its answer.
        log = si.log(since)
        keys = [e["key"] for e in log]
        if fault:
            # A connection closed before any answer may also be retried
            # once on the same key (it may have been a stale kept-alive
            # connection), then once on another key.
            assert len(keys) in (2, 3) and len(set(keys)) == 2 and \
                keys[-1] != keys[0] and keys[-2] == keys[0], \
                [mask(k) for k in keys]
        else:
            assert len(keys) == 2 and keys[0] != keys[1], \
                [(mask(e["key"]), e["status"]) for e in log]
    sd = status_data(d)
    for k in (K1, K2, K3):
        assert key_entry(sd, k)["state"] == "available"
        assert cell(sd, k, FLASH)["state"] == "available"
    since = si.last_seq()
    st, _, _ = gen(d, FLASH, "fine again")
    assert st == 200 and len(si.log(since)) == 1
    finish(d)


def test_proxy_refuses_upstream_cert_that_does_not_verify():
    for cert in ("bad-server", "wronghost"):
        si = StandIn(cert=cert)
        d = proxy_daemon(si)
        d.start()
        st, _, raw = gen(d, FLASH, "over bad TLS")
        assert st in (502, 503, 504), (cert, st, raw[:300])
        err = err_of(raw)
        assert err["code"] == st, err
        # No HTTP request ever reached the stand-in.
        assert si.log() == [], cert
        finish(d)
        d.kill()


# --------------------------------------------------------------------------
# throttling


def test_proxy_throttles_on_own_rpm_limit():
    si = StandIn()
    models = {FLASH: {"tpm_limit": None, "tpd_limit": None, "rpm_limit": 2},
              PRO: {"tpm_limit": None, "tpd_limit": None}}
    d = proxy_daemon(si, priority=[K1], secondary=[], models=models,
                     max_wait_s=0)
    d.start()
    since = si.last_seq()
    for i in range(2):
        st, _, _ = gen(d, FLASH, "within limit %d" % i)
        assert st == 200
    t0 = time.monotonic()
    st, h, raw = gen(d, FLASH, "over the limit")
    assert st == 429, (st, raw[:300])
    assert time.monotonic() - t0 < 3.0
    assert err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    ra = hget(h, "retry-after")
    assert ra and re.fullmatch(r"[0-9]+", ra) and 1 <= int(ra) <= 66, ra
    assert len(si.log(since)) == 2
    st, _, _ = gen(d, PRO, "other model")
    assert st == 200
    finish(d)


def test_proxy_throttles_on_own_tpm_limit():
    si = StandIn()
    models = {FLASH: {"tpm_limit": 500, "tpd_limit": None},
              PRO: {"tpm_limit": None, "tpd_limit": None}}
    d = proxy_daemon(si, priority=[K1], secondary=[], models=models,
                     max_wait_s=0)
    d.start()
    text = "t" * 1200          # 300 input tokens
    since = si.last_seq()
    st, _, _ = gen(d, FLASH, text)
    assert st == 200
    assert si.log(since)[0]["prompt"] == 300
    # 300 used + at least 300 more > 500: refused before going upstream.
    st, h, raw = gen(d, FLASH, text + "!")
    assert st == 429, (st, raw[:300])
    assert err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    ra = hget(h, "retry-after")
    assert ra and re.fullmatch(r"[0-9]+", ra) and 1 <= int(ra) <= 66, ra
    assert len(si.log(since)) == 1
    c = cell(status_data(d), K1, FLASH)
    assert c["tpm_used"] == 300 and c["tpd_used"] == 300, c
    st, _, _ = gen(d, PRO, text)
    assert st == 200
    finish(d)


def test_proxy_waits_when_max_wait_allows():
    # 1. The proxy's own rpm_limit, max_wait_s beyond the window: the
    #    third request is held (not answered 429, not sent upstream).
    si = StandIn()
    models = {FLASH: {"tpm_limit": None, "tpd_limit": None, "rpm_limit": 2},
              PRO: {"tpm_limit": None, "tpd_limit": None}}
    d = proxy_daemon(si, priority=[K1], secondary=[], models=models,
                     max_wait_s=120)
    d.start()
    for i in range(2):
        assert gen(d, FLASH, "fill %d" % i)[0] == 200
    s = socket.create_connection(("127.0.0.1", d.port), timeout=2.0)
    b = gbody("held back")
    s.sendall(("POST /v1beta/models/%s:generateContent HTTP/1.1\r\n"
               "Host: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (FLASH, len(b))).encode() + b)
    try:
        got = s.recv(100)
    except socket.timeout:
        got = None
    s.close()
    assert got is None, got
    assert len(si.log()) == 2
    d.kill()

    # 2. A key cooling for 2 s (retryDelay from the upstream), max_wait_s
    #    10: a new request waits for it and is served.
    si = StandIn({"projects": {"p1": {"quotas": {FLASH: {"rpm": 1}}}}})
    d = proxy_daemon(si, priority=[K1], secondary=[], max_wait_s=10)
    d.start()
    assert gen(d, FLASH, "fills the stand-in's minute")[0] == 200
    since = si.last_seq()
    res = {}

    def first():
        res["a"] = gen(d, FLASH, "cooled by this STANDIN:retry_ms=2000")
    th = threading.Thread(target=first)
    th.start()
    log = wait_entries(si, since, 1)
    assert log[0]["status"] == 429 and log[0]["retry_delay"] == "2s", log[0]
    t429 = log[0]["time"]
    # The stand-in has room again; the proxy still believes K1 cools.
    si.config({"projects": {"p1": None}})
    si.reset_minute()
    t0 = time.monotonic()
    st, _, raw = gen(d, FLASH, "waits for the key")
    dt = time.monotonic() - t0
    th.join(15)
    assert not th.is_alive()
    assert st == 200, (st, raw[:300])
    mine = [e for e in si.log(since)
            if e["request_tokens"] == tokens("waits for the key")]
    assert len(mine) == 1 and mine[0]["key"] == K1
    assert mine[0]["time"] >= t429 + 1.5, (mine[0]["time"] - t429)
    assert dt < 10, dt
    # The first request, too, ends either served after the wait or 429.
    assert res["a"][0] in (200, 429), res["a"][:2]
    finish(d)


# --------------------------------------------------------------------------
# streaming


def test_proxy_sse_stream_relayed_as_it_arrives():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    text = "Stream please STANDIN:chunks=3 STANDIN:delay_ms=700 " \
           "STANDIN:candidates=30"
    s = Stream(d.port, "POST",
               "/v1beta/models/%s:streamGenerateContent?alt=sse" % FLASH,
               gbody(text), dict(JSON, **{"x-goog-api-key": DUMMY}))
    assert s.status == 200
    assert s.headers.get("content-type", "").startswith("text/event-stream")
    body = s.read_all()
    ends = sse_ends(body)
    assert len(ends) == 3 and ends[-1] == len(body), body
    events = [json.loads(body[a:b - 4][len(b"data: "):])
              for a, b in zip([0] + ends[:-1], ends)]
    assert body == b"".join(b"data: " + wire.oneline(ev).encode() +
                            b"\r\n\r\n" for ev in events)
    t = [s.arrival(e) for e in ends]
    # Each event reaches the client before the stand-in sends the next.
    assert t[1] - t[0] >= 0.45 and t[2] - t[1] >= 0.45, \
        [round(x - s.t0, 3) for x in t]
    u = events[-1]["usageMetadata"]
    assert u["candidatesTokenCount"] == 30 and events[0]["usageMetadata"][
        "candidatesTokenCount"] == 10
    e = si.log()[-1]
    assert e["completed"] is True and e["events_sent"] == 3
    wait_counts(d, {(K1, FLASH): (1, tokens(text), 30, tokens(text) + 30)})
    c = cell(status_data(d), K1, FLASH)
    assert c["tpd_used"] == tokens(text) and c["tpm_used"] == tokens(text)
    finish(d)


def test_proxy_json_array_stream_relayed_intact():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    text = "Array stream STANDIN:chunks=4 STANDIN:delay_ms=400 " \
           "STANDIN:candidates=40"
    s = Stream(d.port, "POST",
               "/v1/models/%s:streamGenerateContent" % PRO, gbody(text), JSON)
    assert s.status == 200
    assert "json" in s.headers.get("content-type", "")
    body = s.read_all()
    arr = json.loads(body)
    assert isinstance(arr, list) and len(arr) == 4
    want = "[" + "\n,\r\n".join(wire.pretty(o) for o in arr) + "\n]"
    assert body == want.encode(), body[:300]
    first_end = len(("[" + wire.pretty(arr[0])).encode())
    assert s.pieces[-1][0] - s.arrival(first_end) >= 0.9
    assert [o["usageMetadata"]["candidatesTokenCount"] for o in arr] == \
        [10, 20, 30, 40]
    p = tokens(text)
    wait_counts(d, {(K1, PRO): (1, p, 40, p + 40)})
    finish(d)


def test_proxy_client_disconnect_mid_stream():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    text = "Long stream STANDIN:chunks=20 STANDIN:delay_ms=250 " \
           "STANDIN:candidates=200"
    s = Stream(d.port, "POST",
               "/v1beta/models/%s:streamGenerateContent?alt=sse" % FLASH,
               gbody(text), JSON)
    assert s.status == 200
    got = b""
    for _, p in s.pieces_iter():
        got += p
        if b"\r\n\r\n" in got:
            break
    t_close = time.time()
    s.close(reset=True)
    # The upstream request is closed: the stand-in stops well before the
    # 20 events (5 s) it would otherwise send.
    e = wait_for(lambda: (lambda l: l[-1] if l and l[-1].get("completed")
                          is not None else None)(si.log()), 8,
                 "the stand-in's stream to end")
    assert e["completed"] is False, e
    assert e["events_sent"] < 20 and e["ended"] - t_close < 3.0, \
        (e["events_sent"], e["ended"] - t_close)
    # The usage seen so far is recorded.
    p = tokens(text)

    def recorded():
        c = cell(status_data(d), K1, FLASH)
        t = c["tokens_today"]
        return t["prompt"] == p and 10 <= t["candidates"] < 200 and \
            t["total"] == p + t["candidates"]
    wait_for(recorded, 2, "usage of the cut stream")
    # The proxy is fine afterwards.
    assert gen(d, FLASH, "next")[0] == 200
    finish(d)


def test_proxy_concurrent_accounting_exact():
    si = StandIn()
    d = proxy_daemon(si, workers={"start": 4, "min_spare": 2,
                                  "max_spare": 8, "max": 16})
    d.start()

    def one(i):
        kind = i % 5
        model = FLASH if i % 2 else PRO
        text = ("request %d " % i) + ("x" * ((i * 37) % 300)) + \
            " STANDIN:candidates=%d STANDIN:chunks=%d" % (3 + i, 1 + i % 4)
        if kind == 0:
            st, _, raw = gen(d, model, text)
            return st, raw
        if kind == 1:
            st, _, raw = gen(d, model, text, ver="v1",
                             headers={"x-goog-api-key": DUMMY})
            return st, raw
        if kind == 2:
            s = Stream(d.port, "POST", "/v1beta/models/%s:"
                       "streamGenerateContent?alt=sse" % model,
                       gbody(text), JSON)
            return s.status, s.read_all()
        if kind == 3:
            s = Stream(d.port, "POST", "/v1beta/models/%s:"
                       "streamGenerateContent" % model, gbody(text), JSON)
            st, raw = s.status, s.read_all()
            json.loads(raw)
            return st, raw
        s = Stream(d.port, "POST", "/v1beta/openai/chat/completions",
                   json.dumps({"model": model, "stream": bool(i % 3),
                               "messages": [{"role": "user",
                                             "content": text}]}).encode(),
                   JSON)
        return s.status, s.read_all()

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as ex:
        results = list(ex.map(one, range(40)))
    bad = [(i, st, raw[:200]) for i, (st, raw) in enumerate(results)
           if st != 200]
    assert not bad, bad
    log = si.log()
    assert len([e for e in log if e.get("kind") in GEN_KINDS]) == 40
    want = served(log)
    wait_counts(d, want, timeout=1.5)
    sd = status_data(d)
    for (k, m), v in want.items():
        c = cell(sd, k, m)
        # Reservations settled to the real promptTokenCount.
        assert c["tpd_used"] == v[1] and c["tpm_used"] == v[1], \
            (mask(k), m, c, v)
    assert sum(h["tokens"] for h in sd["history"]) == \
        sum(v[3] for v in want.values())
    finish(d)


# --------------------------------------------------------------------------
# files


def test_proxy_resumable_upload_and_file_affinity():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    since = si.last_seq()
    payload = b"file contents through the proxy\n" * 40
    rh, url, f = upload_file(d, payload, {"x-goog-api-key": DUMMY})
    u = urllib.parse.urlsplit(url)
    assert u.scheme == "http" and u.port == d.port and \
        u.hostname in ("127.0.0.1", "localhost"), url
    assert str(si.port) not in u.netloc
    assert u.path.startswith("/upload/v1beta/files") and "upload_id=" in \
        u.query, url
    assert f["sizeBytes"] == str(len(payload)) and f["state"] == "ACTIVE"
    fid = f["name"].split("/", 1)[1]
    log = si.log(since)
    assert len(log) == 2 and all(e["status"] == 200 for e in log), log
    creator = log[0]["key"]
    assert creator in (K1, K2, K3)
    assert log[1]["project"] == log[0]["project"]
    assert log[1]["key"] == creator, mask(log[1]["key"] or "-")
    assert DUMMY not in json.dumps(log)

    since = si.last_seq()
    st, _, raw = d.request("GET", "/v1beta/files/" + fid)
    assert st == 200 and json.loads(raw)["name"] == "files/" + fid
    assert [e["key"] for e in si.log(since)] == [creator]

    # Make gemini-2.5-pro's sticky key another key than the creator.
    if creator == K1:
        # (rpm 1 filled, not rpm 0: "limit: 0" may read as no quota at all)
        si.config({"projects": {"p1": {"quotas": {PRO: {"rpm": 1}}}}})
        assert gen(d, PRO, "fills K1's minute")[0] == 200
        st, _, _ = gen(d, PRO, "move off K1 STANDIN:retry_ms=1000")
        assert st == 200
        si.config({"projects": {"p1": None}})
        wait_for(lambda: cell(status_data(d), K1, PRO)["state"] ==
                 "available", 5, "K1 to cool down")
    else:
        assert gen(d, PRO, "sticky on K1")[0] == 200
    sd = status_data(d)
    sticky = sd["current_keys"][PRO]
    assert sticky != kid(sd, creator), "sticky is the creator already"

    since = si.last_seq()
    st, _, raw = gen(d, PRO, "what is in the file?", extra_parts=[
        {"fileData": {"mimeType": "text/plain", "fileUri": f["uri"]}}])
    assert st == 200, (st, raw[:300])
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == [(creator, 200)], \
        [(mask(e["key"]), e["status"]) for e in log]
    finish(d)


# --------------------------------------------------------------------------
# models not in the config


def test_proxy_unknown_model_forwarded_and_metered_under_own_name():
    si = StandIn()
    unk = "gemini-it-unlisted-model"
    models = {FLASH: {"tpm_limit": 123456, "tpd_limit": 7654321,
                      "rpm_limit": 1},
              PRO: {"tpm_limit": 250000, "tpd_limit": None}}
    d = proxy_daemon(si, priority=[K1], secondary=[], models=models,
                     max_wait_s=0)
    d.start()
    since = si.last_seq()
    st, _, raw = gen(d, unk, "unknown model STANDIN:candidates=4")
    assert st == 200, raw[:300]
    log = si.log(since)
    assert len(log) == 1 and log[0]["model"] == unk
    assert log[0]["path"] == "/v1beta/models/%s:generateContent" % unk
    assert json.loads(raw)["modelVersion"] == unk
    p = tokens("unknown model STANDIN:candidates=4")
    wait_counts(d, {(K1, unk): (1, p, 4, p + 4)})
    sd = status_data(d)
    assert sd["models"][unk]["tpm_limit"] == 123456
    assert sd["models"][unk]["tpd_limit"] == 7654321
    assert sd["current_keys"][unk] == kid(sd, K1)
    assert counts_of(sd, K1, FLASH) in (None, (0, 0, 0, 0))
    # default_model's rpm_limit (1) applies to it, metered on its own:
    st, h, raw = gen(d, unk, "again")
    assert st == 429 and err_of(raw)["status"] == "RESOURCE_EXHAUSTED"
    assert len(si.log(since)) == 1
    st, _, _ = gen(d, FLASH, "flash has its own meter")
    assert st == 200
    finish(d)


# --------------------------------------------------------------------------
# /api/status_data, admin_token, /api/test_key

ISO_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def iso(s):
    return datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


def test_status_data_fields():
    si = StandIn()
    models = {FLASH: {"tpm_limit": 250000, "tpd_limit": None},
              PRO: {"tpm_limit": 125000, "tpd_limit": 6000000}}
    d = proxy_daemon(si, models=models)
    d.start()
    text = "status fields STANDIN:candidates=12"
    assert gen(d, FLASH, text)[0] == 200
    p = tokens(text)
    wait_counts(d, {(K1, FLASH): (1, p, 12, p + 12)})
    st, _, raw = d.request("GET", "/api/status_data")
    assert st == 200
    sd = json.loads(raw)
    assert re.fullmatch(ISO_Z, sd["now"]), sd["now"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((iso(sd["now"]) - now).total_seconds()) < 60
    assert isinstance(sd["next_quota_reset"], str) and re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d", sd["next_quota_reset"]), \
        sd["next_quota_reset"]
    reset = datetime.datetime.strptime(
        sd["next_quota_reset"], "%Y-%m-%d %H:%M").replace(
            tzinfo=datetime.timezone.utc)
    assert 0 < (reset - now).total_seconds() <= 86400 + 60
    assert sd["models"][FLASH] == dict(sd["models"][FLASH], tpm_limit=250000,
                                       tpd_limit=None)
    assert sd["models"][PRO]["tpm_limit"] == 125000
    assert sd["models"][PRO]["tpd_limit"] == 6000000
    assert len(sd["keys"]) == 3
    ids = set()
    for k, tier in ((K1, "priority"), (K2, "priority"), (K3, "secondary")):
        e = key_entry(sd, k)
        assert re.fullmatch(r"[0-9a-fA-F]{8}", e["id"]), e["id"]
        ids.add(e["id"])
        assert e["masked"] == k[:4] + "\u2026" + k[-4:]
        assert e["tier"] == tier and e["state"] == "available", e
        for m in (FLASH, PRO):
            c = e["models"][m]
            assert c["state"] == "available" and c["cooldown_until"] is None
            for f in ("tpm_used", "tpd_used", "requests_today"):
                assert isinstance(c[f], int), (f, c)
            assert set(c["tokens_today"]) >= {"prompt", "candidates",
                                              "total"}
    assert len(ids) == 3
    assert sd["current_keys"][FLASH] == kid(sd, K1)
    c = cell(sd, K1, FLASH)
    assert c["tpm_used"] == p and c["tpd_used"] == p
    assert c["requests_today"] == 1
    assert cell(sd, K2, FLASH)["requests_today"] == 0
    h = sd["history"]
    assert len(h) == 60
    mins = [iso(x["minute"]) for x in h]
    assert all(re.fullmatch(ISO_Z, x["minute"]) for x in h)
    assert all((b - a).total_seconds() == 60 for a, b in zip(mins, mins[1:]))
    assert abs((mins[-1] - now.replace(second=0, microsecond=0))
               .total_seconds()) <= 60
    assert sum(x["tokens"] for x in h) == p + 12
    no_full_keys(raw)
    finish(d)


def test_admin_token_required():
    si = StandIn()
    adm = "admin-secret-token-xyz"
    d = proxy_daemon(si, admin_token=adm)
    d.start()
    for path in ("/api/status_data", "/metrics", "/status"):
        for hdrs in ({}, {"Authorization": "Bearer wrong"}):
            st, _, raw = d.request("GET", path, headers=hdrs)
            assert st == 401, (path, hdrs, st)
            err = err_of(raw)
            assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED"
    st, _, raw = d.request("POST", "/api/test_key", json.dumps(
        {"api_key": KT_OK, "model_name": FLASH}).encode(), JSON)
    assert st == 401
    st, _, raw = d.request("GET", "/status?token=wrong")
    assert st == 401
    auth = {"Authorization": "Bearer " + adm}
    assert status_data(d, adm)["keys"]
    # (The dashboard and /metrics may be built later: only "not 401".)
    st, _, _ = d.request("GET", "/metrics", headers=auth)
    assert st != 401
    st, _, _ = d.request("GET", "/status?token=" + adm)
    assert st != 401
    st, _, _ = d.request("GET", "/status", headers=auth)
    assert st != 401
    # The proxy itself does not need the admin token.
    assert gen(d, FLASH, "no admin token here")[0] == 200
    finish(d)


def test_api_test_key():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    seen = []
    since = si.last_seq()
    cases = [(KT_OK, True, 200), (KT_UNKNOWN, False, 400),
             (KT_QUOTA, True, 429), (KSUS, False, 403)]
    for key, valid, status in cases:
        st, h, raw = d.request("POST", "/api/test_key", json.dumps(
            {"api_key": key, "model_name": FLASH}).encode(), JSON)
        seen += [raw, json.dumps(h)]
        assert st == 200, (mask(key), st, raw[:300])
        obj = json.loads(raw)
        assert obj["valid"] is valid and obj["status"] == status, \
            (mask(key), obj)
        assert isinstance(obj.get("message"), str), obj
    log = si.log(since)
    assert [(e["key"], e["status"]) for e in log] == \
        [(k, s) for k, _, s in cases], \
        [(mask(e["key"] or "-"), e["status"]) for e in log]
    for e in log:
        assert e["model"] == FLASH
        assert e["path"].endswith("/models/%s:generateContent" % FLASH)
    sd = status_data(d)
    assert len(sd["keys"]) == 3
    st, _, raw = d.request("GET", "/api/status_data")
    seen.append(raw)
    for k in (K1, K2, K3):
        assert counts_of(sd, k, FLASH) in (None, (0, 0, 0, 0))
    # Neither logged, kept, nor echoed (the 403 body echoes KSUS).
    no_full_keys(*seen)
    finish(d)
