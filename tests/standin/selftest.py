#!/usr/bin/env python3
"""Self-test of the stand-in Gemini server (tests/standin/gemini_standin.py).

Makes certificates with tests/mkca.sh into a temporary directory, starts the
stand-in (reading its READY line) and exercises every feature over real TLS,
verifying against the test CA. Standard library only. The last line printed is
"N passed, N failed"; the exit status is non-zero on any failure.
"""

import base64
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MKCA = os.path.join(ROOT, "tests", "mkca.sh")
STANDIN = os.path.join(HERE, "gemini_standin.py")

K1 = "AIzaSyST-project1-key-number-one-00001"
K2 = "AIzaSyST-project1-key-number-two-00002"
K3 = "AIzaSyST-project2-key-number-three-003"
KINV = "AIzaSyST-invalid-key-0000000000000004"
KSUS = "AIzaSyST-suspended-key-00000000000005"
KBLK = "AIzaSyST-blocked-key-000000000000006"
KLEAK = "AQ.ST-leaked-key-0000000000000000007"
KNEW = "AIzaSyST-added-at-run-time-0000000008"

CONFIG = {
    "keys": {
        K1: {"project": "p1"}, K2: {"project": "p1"}, K3: {"project": "p2"},
        KINV: {"project": "p4", "state": "invalid"},
        KSUS: {"project": "p5", "state": "suspended"},
        KBLK: {"project": "p6", "state": "blocked"},
        KLEAK: {"project": "p7", "state": "leaked"},
    },
    "quotas": {
        "rpm-model": {"rpm": 3},
        "tpm-model": {"tpm": 100},
        "rpd-model": {"rpd": 2},
        "tpd-model": {"tpd": 50},
        "conc-model": {"rpm": 15},
        "*": {"rpm": 100000, "tpm": 1000000000, "rpd": 1000000, "tpd": None},
    },
    "free_tier": True,
}

PASSED = 0
FAILED = 0


def check(name, cond, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print("ok   %s" % name)
    else:
        FAILED += 1
        print("FAIL %s%s" % (name, (": " + str(detail)[:600]) if detail != "" else ""))
    return cond


def tokens(nbytes):
    return max(1, math.ceil(nbytes / 4))


def gen_body(text, **extra):
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    body.update(extra)
    return body


class BioTLS:
    """Minimal TLS client over ssl.MemoryBIO: recv() raises ConnectionResetError on a
    TCP RST, returns b"" on EOF (with or without close_notify)."""

    def __init__(self, ctx, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("EOF during handshake")
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            self.inc.write_eof()
            return False
        self.inc.write(d)
        return True

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def close(self):
        self.sock.close()


class Standin:
    def __init__(self, certdir, cert="server", config=None, log=None):
        self.dir = tempfile.mkdtemp(prefix="standin-run-")
        args = [sys.executable, STANDIN, "--cert", os.path.join(certdir, cert + ".pem"),
                "--key", os.path.join(certdir, cert + ".key"), "--port", "0"]
        if config is not None:
            path = os.path.join(self.dir, "standin.json")
            with open(path, "w") as f:
                json.dump(config, f)
            args += ["--config", path]
        if log:
            args += ["--log", log]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"^READY (\d+)\n$", line)
        if not m:
            raise RuntimeError("no READY line: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))

    def stop(self, sig_timeout=5.0):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(sig_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class Client:
    def __init__(self, port, ctx, host="localhost"):
        self.port, self.ctx, self.host = port, ctx, host
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)

    def request(self, method, path, body=None, headers=None, key=None, raw_body=None):
        h = {}
        if key is not None:
            h["x-goog-api-key"] = key
        if body is not None:
            raw_body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=raw_body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt:
                    raise

    def json(self, method, path, body=None, headers=None, key=None):
        status, resp, data = self.request(method, path, body, headers, key)
        try:
            obj = json.loads(data) if data else None
        except ValueError:
            obj = None
        return status, resp, obj, data

    def close(self):
        self.conn.close()


class WSClient:
    """A raw WebSocket client over TLS (RFC 6455, client side): masked frames
    out (or unmasked, to test the server's checks), frames in as they come."""

    def __init__(self, port, ctx, path, headers=None, key=None, timeout=10.0, wskey=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.wskey = wskey or base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "localhost:%d" % port, "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": self.wskey, "Sec-WebSocket-Version": "13"}
        if key is not None:
            h["x-goog-api-key"] = key
        h.update(headers or {})
        head = "GET %s HTTP/1.1\r\n" % path + "".join(
            "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None) + "\r\n"
        self.sock.sendall(head.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                d = self.sock.recv(65536)
                if not d:
                    break
                self.buf += d
            self.body = self.buf[:n]

    def accept_ok(self):
        want = base64.b64encode(hashlib.sha1(
            (self.wskey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        return self.headers.get("sec-websocket-accept") == want

    def frame(self, opcode, payload, fin=True, mask=True, rsv=0):
        n = len(payload)
        b = bytes([(0x80 if fin else 0) | rsv | opcode])
        m = 0x80 if mask else 0
        if n < 126:
            b += bytes([m | n])
        elif n < 65536:
            b += bytes([m | 126]) + struct.pack("!H", n)
        else:
            b += bytes([m | 127]) + struct.pack("!Q", n)
        if mask:
            k = os.urandom(4)
            b += k + bytes(c ^ k[i & 3] for i, c in enumerate(payload)) if n < 4096 else \
                k + _xor(payload, k)
        else:
            b += payload
        self.sock.sendall(b)

    def send(self, obj, binary=False):
        self.frame(0x2 if binary else 0x1, json.dumps(obj).encode())

    def close(self, code=1000, reason=""):
        self.frame(0x8, struct.pack("!H", code) + reason.encode())

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("eof")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        """(fin, opcode, payload, masked) of the next frame."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        mask = self._need(4) if b1 & 0x80 else None
        data = self._need(n)
        return bool(b0 & 0x80), b0 & 0x0F, data, mask is not None

    def recv(self):
        """The next message: ("msg", obj, opcode) / ("close", code, reason) /
        ("pong", payload, None)."""
        fin, op, data, masked = self.read_frame()
        self.masked_seen = getattr(self, "masked_seen", False) or masked
        if op == 0x8:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            return ("close", code, data[2:].decode("utf-8", "replace"))
        if op == 0xA:
            return ("pong", data, None)
        return ("msg", json.loads(data), op)

    def until(self, pred, limit=50):
        """Messages up to and including the first that pred() accepts."""
        out = []
        for _ in range(limit):
            m = self.recv()
            out.append(m)
            if pred(m) or m[0] == "close":
                break
        return out

    def closed(self):
        """Read to the server's close: (code, reason), or None."""
        try:
            for _ in range(100):
                m = self.recv()
                if m[0] == "close":
                    return m[1], m[2]
        except (EOFError, OSError):
            return None
        return None

    def eof(self):
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def shut(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _xor(payload, k):
    n = len(payload)
    key = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


LIVE = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def live_turn(text):
    return {"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                              "turnComplete": True}}


def turn_complete(m):
    return m[0] == "msg" and (m[1].get("serverContent") or {}).get("turnComplete")


def err_of(obj):
    if isinstance(obj, list) and obj:
        obj = obj[0]
    return (obj or {}).get("error") or {}


class Suite:
    def __init__(self, certdir, tmp):
        self.certdir = certdir
        self.tmp = tmp
        self.ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
        self.logpath = os.path.join(tmp, "standin-log.jsonl")
        self.s = Standin(certdir, config=CONFIG, log=self.logpath)
        self.port = self.s.port
        self.c = Client(self.port, self.ctx)

    def admin(self, method, path, body=None):
        return self.c.json(method, "/__standin/" + path, body)

    def log_since(self, seq):
        return self.admin("GET", "log?since=%d" % seq)[2]

    def last_seq(self):
        log = self.admin("GET", "log")[2]
        return log[-1]["seq"] if log else 0

    def gen(self, model, text, key=K1, prefix="/v1beta", client=None, **extra):
        return (client or self.c).json("POST", "%s/models/%s:generateContent" % (prefix, model),
                                       gen_body(text, **extra), key=key)

    # ------------------------------------------------------------------
    def t_tls(self):
        st, resp, obj, _ = self.c.json("GET", "/__standin/healthz")
        check("tls: healthz over TLS verified against ca.pem (localhost)", st == 200 and obj["ok"])
        c = Client(self.port, self.ctx, host="127.0.0.1")
        st, _, _, _ = c.json("GET", "/__standin/healthz")
        c.close()
        check("tls: IP SAN 127.0.0.1 verifies", st == 200)
        for cert, what in (("bad-server", "certificate from another CA"),
                           ("wronghost", "certificate for example.invalid")):
            other = Standin(self.certdir, cert=cert, config=CONFIG)
            try:
                c = Client(other.port, self.ctx)
                try:
                    c.json("GET", "/__standin/healthz")
                    check("tls: %s is refused" % what, False, "connection succeeded")
                except ssl.SSLCertVerificationError as e:
                    check("tls: %s is refused" % what, True)
                    if cert == "wronghost":
                        check("tls: wronghost fails on the host name", "match" in str(e) or
                              "mismatch" in str(e).lower(), e)
                    else:
                        check("tls: bad-server fails on the issuer", "issuer" in str(e), e)
                c.close()
            finally:
                other.stop()
        before = {f: open(os.path.join(self.certdir, f), "rb").read() for f in os.listdir(self.certdir)
                  if f.endswith((".pem", ".key"))}
        r = subprocess.run(["sh", MKCA, self.certdir], capture_output=True)
        after = {f: open(os.path.join(self.certdir, f), "rb").read() for f in os.listdir(self.certdir)
                 if f.endswith((".pem", ".key"))}
        check("mkca: second run exits 0 and changes nothing", r.returncode == 0 and before == after)
        check("mkca: all ten files exist", len(before) == 10, sorted(before))

    def t_generate(self):
        text = "Tell me a short story about a lighthouse keeper."
        seq = self.last_seq()
        st, resp, obj, raw = self.gen("gemini-2.5-flash", text)
        check("generate: 200", st == 200, raw)
        check("generate: Content-Type application/json; charset=UTF-8",
              resp.getheader("Content-Type") == "application/json; charset=UTF-8")
        check("generate: Server header", resp.getheader("Server") == "scaffolding on HTTPServer2")
        check("generate: Vary header", "X-Origin" in (resp.getheader("Vary") or ""))
        check("generate: Content-Length framing", int(resp.getheader("Content-Length")) == len(raw))
        cand = obj["candidates"][0]
        check("generate: candidate shape", cand["content"]["role"] == "model" and
              cand["finishReason"] == "STOP" and cand["index"] == 0 and
              isinstance(cand["content"]["parts"][0]["text"], str))
        u = obj["usageMetadata"]
        p = tokens(len(text.encode()))
        check("generate: promptTokenCount = ceil(bytes/4)", u["promptTokenCount"] == p, u)
        check("generate: candidatesTokenCount default 10", u["candidatesTokenCount"] == 10, u)
        check("generate: totalTokenCount", u["totalTokenCount"] == p + 10, u)
        check("generate: promptTokensDetails TEXT", u["promptTokensDetails"] ==
              [{"modality": "TEXT", "tokenCount": p}], u)
        check("generate: no thoughts/cache fields by default",
              "thoughtsTokenCount" not in u and "cachedContentTokenCount" not in u, u)
        check("generate: modelVersion and responseId",
              obj["modelVersion"] == "gemini-2.5-flash" and len(obj["responseId"]) >= 10)
        check("generate: keep-alive reuses the connection", self.c.conn.sock is not None)
        sock = self.c.conn.sock
        st, _, _, _ = self.c.json("GET", "/__standin/healthz")
        check("generate: second request on the same TLS connection", self.c.conn.sock is sock)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent?key=" + K2,
                                    gen_body("via query"))
        check("generate: ?key= accepted", st == 200)
        st, _, obj, _ = self.gen("gemini-2.5-flash", "via v1", prefix="/v1")
        check("generate: /v1/ path served", st == 200 and obj["modelVersion"] == "gemini-2.5-flash")
        sys_text = "You are terse."
        st, _, obj, _ = self.gen("gemini-2.5-flash", "hi STANDIN:candidates=7 STANDIN:thoughts=5",
                                 systemInstruction={"parts": [{"text": sys_text}]})
        u = obj["usageMetadata"]
        p = tokens(len((sys_text + "hi STANDIN:candidates=7 STANDIN:thoughts=5").encode()))
        check("generate: systemInstruction counted, candidates=7, thoughts=5",
              u["promptTokenCount"] == p and u["candidatesTokenCount"] == 7 and
              u["thoughtsTokenCount"] == 5 and u["totalTokenCount"] == p + 12, u)
        log = self.log_since(seq)
        check("generate: log records key sources",
              [e["key_source"] for e in log] == ["header", "query", "header", "header"],
              [e["key_source"] for e in log])
        check("generate: log records keys and projects",
              [e["key"] for e in log][:2] == [K1, K2] and log[0]["project"] == "p1", log[:2])
        e = log[0]
        check("generate: log entry fields", e["model"] == "gemini-2.5-flash" and e["status"] == 200
              and e["method"] == "POST" and e["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
              and e["stream"] is False and e["prompt"] == tokens(len(text)) and e["candidates"] == 10
              and e["total"] == e["prompt"] + 10 and e["cached"] == 0 and e["thoughts"] == 0, e)

    def t_key_errors(self):
        expect_invalid = {"error": {
            "code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": "API key not valid. Please pass a valid API key."}]}}
        st, _, obj, _ = self.gen("gemini-2.5-flash", "x", key="AIzaSyNOT-IN-CONFIG-0000000000000000")
        check("keys: unlisted key -> 400 API_KEY_INVALID exact body", st == 400 and obj == expect_invalid, obj)
        st, _, obj, _ = self.gen("gemini-2.5-flash", "x", key=KINV)
        check("keys: state invalid -> 400 API_KEY_INVALID", st == 400 and obj == expect_invalid, obj)
        st, _, obj, raw = self.gen("gemini-2.5-flash", "x", key=KSUS)
        e = err_of(obj)
        d = (e.get("details") or [{}])[0]
        check("keys: suspended -> 403 PERMISSION_DENIED, full key echoed",
              st == 403 and e["status"] == "PERMISSION_DENIED" and
              e["message"] == "Permission denied: Consumer 'api_key:%s' has been suspended." % KSUS, e)
        check("keys: suspended ErrorInfo CONSUMER_SUSPENDED with key in metadata",
              d.get("reason") == "CONSUMER_SUSPENDED" and d.get("domain") == "googleapis.com" and
              any(KSUS in v for v in d.get("metadata", {}).values()) and
              d["metadata"].get("consumer", "").startswith("projects/"), d)
        check("keys: raw body contains the full key", KSUS.encode() in raw)
        st, _, obj, _ = self.gen("gemini-2.5-flash", "x", key=KBLK)
        e = err_of(obj)
        d = (e.get("details") or [{}])[0]
        check("keys: blocked -> 403 API_KEY_SERVICE_BLOCKED",
              st == 403 and d.get("reason") == "API_KEY_SERVICE_BLOCKED" and
              d["metadata"]["methodName"] ==
              "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent" and
              e["message"].startswith("Requests to this API generativelanguage.googleapis.com method"), e)
        st, _, obj, _ = self.gen("gemini-2.5-flash", "x", key=KLEAK)
        check("keys: leaked -> 403", st == 403 and err_of(obj) == {
            "code": 403, "message": "Your API key was reported as leaked. Please use another API key.",
            "status": "PERMISSION_DENIED"}, obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent", gen_body("x"))
        check("keys: no key -> 403 PERMISSION_DENIED", st == 403 and
              err_of(obj)["status"] == "PERMISSION_DENIED" and "API Key" in err_of(obj)["message"], obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent", gen_body("x"),
                                    headers={"Authorization": "Bearer " + K1})
        check("keys: Bearer on a native path -> 401 UNAUTHENTICATED",
              st == 401 and err_of(obj)["status"] == "UNAUTHENTICATED", obj)
        st, _, obj, _ = self.c.json("GET", "/v1beta/models", key="AIzaSyNOT-IN-CONFIG-0000000000000000")
        check("keys: models list also checks the key", st == 400)

    def read_stream(self, path, body, key=K1, headers=None):
        """(response, [(arrival time, event bytes)], raw bytes) for an SSE answer."""
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=30)
        h = {"Content-Type": "application/json", "x-goog-api-key": key}
        h.update(headers or {})
        conn.request("POST", path, body=json.dumps(body), headers=h)
        resp = conn.getresponse()
        buf, raw, events = b"", b"", []
        sep = b"\r\n\r\n" if "alt=sse" in path else b"\n\n"
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            now = time.time()
            raw += chunk
            buf += chunk
            while sep in buf:
                ev, buf = buf.split(sep, 1)
                events.append((now, ev))
        conn.close()
        return resp, events, raw

    def t_sse(self):
        text = "stream me STANDIN:chunks=4 STANDIN:delay_ms=250 STANDIN:thoughts=3"
        p = tokens(len(text))
        resp, events, raw = self.read_stream(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", gen_body(text))
        check("sse: 200 text/event-stream, chunked", resp.status == 200 and
              resp.getheader("Content-Type") == "text/event-stream" and
              resp.getheader("Transfer-Encoding") == "chunked" and resp.getheader("Content-Length") is None)
        check("sse: 4 events, each 'data: {...}' ended by \\r\\n\\r\\n",
              len(events) == 4 and all(ev.startswith(b"data: {") for _, ev in events) and
              raw.endswith(b"\r\n\r\n") and raw.count(b"\r\n\r\n") == 4, raw[:300])
        objs = [json.loads(ev[6:]) for _, ev in events]
        us = [o["usageMetadata"] for o in objs]
        check("sse: usageMetadata in every event", all("promptTokenCount" in u for u in us))
        cands = [u["candidatesTokenCount"] for u in us]
        check("sse: cumulative candidates, final 10", cands == sorted(cands) and cands[-1] == 10 and
              cands[0] < 10, cands)
        check("sse: prompt constant and totals consistent",
              all(u["promptTokenCount"] == p and u["totalTokenCount"] == p + u["candidatesTokenCount"] + 3
                  for u in us), us)
        fr = [o["candidates"][0].get("finishReason") for o in objs]
        check("sse: only the last event has finishReason STOP", fr == [None, None, None, "STOP"], fr)
        gaps = [events[i + 1][0] - events[i][0] for i in range(len(events) - 1)]
        check("sse: events arrive separately in time (delay_ms=250)", all(g > 0.18 for g in gaps), gaps)
        check("sse: one-line JSON like Google (': ' after keys)", b'"candidates": [' in events[0][1])
        # legacy usage: intermediate chunks without candidatesTokenCount
        resp, events, raw = self.read_stream(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            gen_body("old style STANDIN:legacy_usage=1"))
        us = [json.loads(ev[6:])["usageMetadata"] for _, ev in events]
        check("sse: legacy_usage omits candidatesTokenCount before the last chunk",
              "candidatesTokenCount" not in us[0] and us[-1]["candidatesTokenCount"] == 10, us)

    def t_json_array(self):
        st, resp, data = self.c.request("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                                        raw_body=json.dumps(gen_body("array please")).encode(),
                                        headers={"x-goog-api-key": K1})
        check("array: 200 application/json chunked", st == 200 and
              resp.getheader("Content-Type") == "application/json; charset=UTF-8" and
              resp.getheader("Transfer-Encoding") == "chunked")
        try:
            arr = json.loads(data)
        except ValueError:
            arr = None
        check("array: body parses as one JSON array of 3 chunks", isinstance(arr, list) and len(arr) == 3, data[:200])
        check("array: framed like Google ([{ ... }\\n,\\r\\n{ ... }\\n])",
              data.startswith(b"[{\n  \"candidates\"") and data.count(b"\n,\r\n") == 2 and
              data.endswith(b"}\n]"), data[-40:])
        if arr:
            check("array: cumulative usage in every element",
                  [a["usageMetadata"]["candidatesTokenCount"] for a in arr] == [3, 6, 10])
        st, _, data = self.c.request("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                                     raw_body=json.dumps(gen_body("x")).encode(),
                                     headers={"x-goog-api-key": KINV})
        obj = json.loads(data)
        check("array: errors on the non-SSE stream come as an array",
              st == 400 and isinstance(obj, list) and obj[0]["error"]["code"] == 400 and
              data.startswith(b"[{\n  \"error\"") and data.endswith(b"}\n]"), data[:80])
        st, _, data = self.c.request("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                                     raw_body=json.dumps(gen_body("x")).encode(),
                                     headers={"x-goog-api-key": KINV})
        check("sse: errors before the stream are a plain JSON object",
              st == 400 and isinstance(json.loads(data), dict), data[:80])

    def t_count_embed(self):
        text = "count these tokens please"
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:countTokens",
                                    gen_body(text), key=K1)
        check("countTokens: totalTokens", st == 200 and obj["totalTokens"] == tokens(len(text)), obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:countTokens",
                                    {"generateContentRequest": dict(gen_body(text), model="models/gemini-2.5-flash")},
                                    key=K1)
        check("countTokens: generateContentRequest form", st == 200 and obj["totalTokens"] == tokens(len(text)))
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-embedding-001:embedContent",
                                    {"content": {"parts": [{"text": "embed me"}]}}, key=K1)
        check("embedContent: embedding.values", st == 200 and len(obj["embedding"]["values"]) == 16 and
              "usageMetadata" not in obj, obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                                    {"requests": [{"model": "models/gemini-embedding-001",
                                                   "content": {"parts": [{"text": t}]}} for t in ("a", "b")]},
                                    key=K1)
        check("batchEmbedContents: two embeddings", st == 200 and len(obj["embeddings"]) == 2 and
              obj["embeddings"][0] != obj["embeddings"][1], obj)

    def t_models(self):
        st, _, obj, _ = self.c.json("GET", "/v1beta/models", key=K1)
        names = [m["name"] for m in obj["models"]]
        check("models: list", st == 200 and "models/gemini-2.5-flash" in names and
              "nextPageToken" not in obj, names)
        st, _, p1, _ = self.c.json("GET", "/v1beta/models?pageSize=2", key=K1)
        st2, _, p2, _ = self.c.json("GET", "/v1beta/models?pageSize=2&pageToken=" + p1["nextPageToken"], key=K1)
        n1 = [m["name"] for m in p1["models"]]
        n2 = [m["name"] for m in p2["models"]]
        check("models: pageSize / nextPageToken", len(n1) == 2 and len(n2) == 2 and not set(n1) & set(n2)
              and n1 + n2 == names[:4], (n1, n2))
        st, _, obj, _ = self.c.json("GET", "/v1/models/gemini-2.5-pro", key=K1)
        check("models: get one", st == 200 and obj["name"] == "models/gemini-2.5-pro" and
              "generateContent" in obj["supportedGenerationMethods"], obj)

    def check_429(self, label, obj, metric, qid, limit, model, day=False):
        e = err_of(obj)
        det = {d["@type"].rsplit(".", 1)[-1]: d for d in e.get("details", [])}
        v = (det.get("QuotaFailure") or {}).get("violations", [{}])[0]
        ok = (e.get("code") == 429 and e.get("status") == "RESOURCE_EXHAUSTED" and
              e["message"].startswith("You exceeded your current quota, please check your plan and billing "
                                      "details. For more information on this error, head to: "
                                      "https://ai.google.dev/gemini-api/docs/rate-limits.") and
              ("* Quota exceeded for metric: %s, limit: %s, model: %s" % (metric, limit, model)) in e["message"]
              and re.search(r"\nPlease retry in \d+(\.\d+)?s\.$", e["message"]) is not None)
        check("%s: 429 RESOURCE_EXHAUSTED message" % label, ok, e.get("message"))
        check("%s: QuotaFailure violation" % label, v == {
            "quotaMetric": metric, "quotaId": qid,
            "quotaDimensions": {"location": "global", "model": model}, "quotaValue": str(limit)}, v)
        check("%s: Help link" % label, det.get("Help", {}).get("links", [{}])[0].get("url") ==
              "https://ai.google.dev/gemini-api/docs/rate-limits")
        rd = det.get("RetryInfo", {}).get("retryDelay", "")
        m = re.match(r"^(\d+(?:\.\d+)?)(s|ms)$", rd)
        check("%s: RetryInfo retryDelay string" % label, m is not None, rd)
        return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else None

    def t_quota(self):
        fm = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
        ft = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
        sts = [self.gen("rpm-model", "hello %d" % i, key=(K1 if i % 2 else K2))[0] for i in range(3)]
        check("rpm: three requests pass", sts == [200, 200, 200], sts)
        st, resp, obj, _ = self.gen("rpm-model", "one too many", key=K2)
        check("rpm: fourth gets 429, shared by keys of one project", st == 429, obj)
        d = self.check_429("rpm", obj, fm, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 3, "rpm-model")
        check("rpm: retryDelay is the real time until the window frees", d is not None and 50 <= d <= 60, d)
        check("rpm: 429 is application/json", resp.getheader("Content-Type") == "application/json; charset=UTF-8")
        st, _, _, _ = self.gen("rpm-model", "other project", key=K3)
        check("rpm: another project is not affected", st == 200)
        st, _, obj, _ = self.gen("tpm-model", "x" * 320)
        check("tpm: 80 tokens pass under 100", st == 200 and obj["usageMetadata"]["promptTokenCount"] == 80)
        st, _, obj, _ = self.gen("tpm-model", "y" * 320, key=K2)
        check("tpm: next 80 tokens exceed 100", st == 429)
        self.check_429("tpm", obj, ft, "GenerateContentInputTokensPerModelPerMinute-FreeTier", 100, "tpm-model")
        st, _, obj, _ = self.gen("tpm-model", "z" * 40)
        check("tpm: a small request still fits", st == 200)
        sts = [self.gen("rpd-model", "day %d" % i)[0] for i in range(2)]
        st, _, obj, _ = self.gen("rpd-model", "day 3")
        check("rpd: third request of the day -> 429", sts == [200, 200] and st == 429)
        d = self.check_429("rpd", obj, fm, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", 2, "rpd-model")
        check("rpd: per-day 429 still has a short retryDelay (22s)",
              err_of(obj)["details"][-1]["retryDelay"] == "22s", d)
        st, _, _, _ = self.admin("POST", "reset_day")
        st2, _, _, _ = self.gen("rpd-model", "new day")
        check("rpd: reset_day starts a new day", st == 200 and st2 == 200)
        st, _, obj, _ = self.gen("tpd-model", "t" * 160)
        st2, _, obj2, _ = self.gen("tpd-model", "t" * 160)
        check("tpd: 40 + 40 tokens exceed 50 per day", st == 200 and st2 == 429)
        self.check_429("tpd", obj2, ft, "GenerateContentInputTokensPerModelPerDay-FreeTier", 50, "tpd-model")
        self.admin("POST", "config", {"free_tier": False})
        st, _, obj, _ = self.gen("rpm-model", "paid now")
        self.check_429("paid rpm", obj, "generativelanguage.googleapis.com/generate_requests_per_model",
                       "GenerateRequestsPerMinutePerProjectPerModel", 3, "rpm-model")
        st, _, obj, _ = self.gen("tpm-model", "w" * 320)
        self.check_429("paid tpm", obj, "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
                       "GenerateContentPaidTierInputTokensPerModelPerMinute", 100, "tpm-model")
        self.admin("POST", "config", {"free_tier": True, "error_style": "classic"})
        st, _, obj, _ = self.gen("rpm-model", "classic style")
        e = err_of(obj)
        check("classic style: QuotaFailure first, no ai.dev sentence",
              e["details"][0]["@type"].endswith("QuotaFailure") and "ai.dev" not in e["message"], e)
        self.admin("POST", "config", {"error_style": "current"})
        st, _, obj, _ = self.gen("gemini-2.5-flash", "force STANDIN:quota=rpd")
        self.check_429("forced rpd", obj, fm, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", 1000000,
                       "gemini-2.5-flash")
        st, _, obj, _ = self.admin("GET", "usage")
        rows = {(r["project"], r["model"]): r for r in obj["usage"]}
        check("admin usage: windows visible", rows[("p1", "rpm-model")]["rpm_used"] == 3, rows.get(("p1", "rpm-model")))
        self.admin("POST", "reset_minute")
        st, _, _, _ = self.gen("rpm-model", "after reset_minute")
        check("admin reset_minute clears the minute windows", st == 200)

    def t_throttle(self):
        """A 429 storm: every key of every project answers 429, nothing counted."""
        self.admin("POST", "config", {"throttle": {"models": ["gemini-2.5-flash"],
                                                   "retry_delay": 4}})
        seq = self.last_seq()
        sts = [self.gen("gemini-2.5-flash", "storm %d" % i, key=k) for i, k in enumerate((K1, K2, K3))]
        check("throttle: every key answers 429", [r[0] for r in sts] == [429] * 3, [r[0] for r in sts])
        e = err_of(sts[0][2])
        check("throttle: Google's bare 429 with a RetryInfo",
              e.get("status") == "RESOURCE_EXHAUSTED" and e["message"].startswith("Resource has been exhausted")
              and e["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                    "retryDelay": "4s"}], e)
        log = self.log_since(seq)
        check("throttle: logged, flagged, nothing counted",
              len(log) == 3 and all(x.get("throttled") and x["status"] == 429 for x in log), log)
        st, _, _, _ = self.gen("gemini-2.5-pro", "another model")
        check("throttle: other models are served", st == 200)
        st, _, _, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:countTokens",
                                  gen_body("count"), key=K1)
        check("throttle: countTokens is not throttled", st == 200)
        self.admin("POST", "config", {"throttle": {"models": None, "quota": "rpm", "retry_delay": 2}})
        st, _, obj, _ = self.gen("gemini-2.5-pro", "quota storm")
        d = self.check_429("throttle rpm", obj, "generativelanguage.googleapis.com/"
                           "generate_content_free_tier_requests",
                           "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 100000, "gemini-2.5-pro")
        check("throttle rpm: its retry_delay", d == 2, d)
        self.admin("POST", "config", {"throttle": None})
        st, _, _, _ = self.gen("gemini-2.5-flash", "calm again")
        check("throttle: off again", st == 200)

    def t_implicit_cache(self):
        prefix = ("The quick brown fox jumps over the lazy dog. " * 50)[:2000]
        st, _, obj, _ = self.gen("cache-model", prefix + "first question")
        u1 = obj["usageMetadata"]
        st, _, obj, _ = self.gen("cache-model", prefix + "second question", key=K2)
        u2 = obj["usageMetadata"]
        check("implicit cache: first request has no cached tokens", "cachedContentTokenCount" not in u1, u1)
        check("implicit cache: shared 2000-byte prefix -> 500 cached tokens",
              u2.get("cachedContentTokenCount") == 500 and
              u2.get("cacheTokensDetails") == [{"modality": "TEXT", "tokenCount": 500}] and
              u2["promptTokenCount"] == tokens(len(prefix + "second question")), u2)
        st, _, obj, _ = self.gen("cache-model", prefix + "third question", key=K3)
        check("implicit cache: another project does not share it",
              "cachedContentTokenCount" not in obj["usageMetadata"])
        short = "s" * 900
        self.gen("cache-model", short + "a")
        st, _, obj, _ = self.gen("cache-model", short + "b")
        check("implicit cache: prefix under 1024 bytes is not cached",
              "cachedContentTokenCount" not in obj["usageMetadata"])
        seq = self.last_seq()
        self.gen("cache-model", prefix + "zzz fourth")
        check("implicit cache: log records cached tokens", self.log_since(seq)[0]["cached"] == 500)

    def t_status_magic(self):
        st, _, obj, _ = self.gen("gemini-2.5-flash", "STANDIN:status=503")
        check("status=503: UNAVAILABLE overloaded", st == 503 and err_of(obj) == {
            "code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}, obj)
        st, _, obj, _ = self.gen("gemini-2.5-flash", "STANDIN:status=500")
        check("status=500: INTERNAL", st == 500 and err_of(obj)["status"] == "INTERNAL")
        t0 = time.time()
        st, _, obj, _ = self.gen("gemini-2.5-flash", "STANDIN:sleep_ms=400")
        check("sleep_ms=400 delays the answer", st == 200 and time.time() - t0 >= 0.38)

    def t_openai(self):
        bearer = {"Authorization": "Bearer " + K1}
        text = "Hello from the OpenAI SDK"
        seq = self.last_seq()
        st, resp, obj, _ = self.c.json("POST", "/v1beta/openai/chat/completions",
                                       {"model": "models/gemini-2.5-flash",
                                        "messages": [{"role": "user", "content": text}]}, headers=bearer)
        p = tokens(len(text))
        check("openai chat: 200 with usage", st == 200 and obj["object"] == "chat.completion" and
              obj["usage"] == {"completion_tokens": 10, "prompt_tokens": p, "total_tokens": p + 10} and
              obj["choices"][0]["message"]["role"] == "assistant" and
              obj["choices"][0]["finish_reason"] == "stop", obj)
        e = self.log_since(seq)[0]
        check("openai chat: log has bearer source and bare model name",
              e["key_source"] == "bearer" and e["model"] == "gemini-2.5-flash" and e["key"] == K1, e)
        resp, events, raw = self.read_stream(
            "/v1beta/openai/chat/completions",
            {"model": "gemini-2.5-flash", "stream": True,
             "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]},
            headers=bearer)
        p = tokens(len("sys" + text))
        check("openai stream: text/event-stream, data: [DONE] last",
              resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream" and
              events[-1][1] == b"data: [DONE]" and all(ev.startswith(b"data: ") for _, ev in events), raw[-80:])
        chunks = [json.loads(ev[6:]) for _, ev in events[:-1]]
        check("openai stream: usage in every chunk, cumulative, final one counts all",
              all("usage" in c for c in chunks) and chunks[-1]["usage"] ==
              {"completion_tokens": 10, "prompt_tokens": p, "total_tokens": p + 10} and
              chunks[-1]["choices"][0]["finish_reason"] == "stop" and
              all(c["object"] == "chat.completion.chunk" for c in chunks), chunks[-1])
        st, _, obj, raw = self.c.json("POST", "/v1beta/openai/chat/completions",
                                      {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]},
                                      headers={"Authorization": "Bearer " + KINV})
        check("openai: errors are an array [{\"error\": ...}]", st == 400 and isinstance(obj, list) and
              obj[0]["error"]["details"][0]["reason"] == "API_KEY_INVALID" and raw.startswith(b"[{"), raw[:60])
        for i in range(3):
            self.c.json("POST", "/v1beta/openai/chat/completions",
                        {"model": "oa-rpm-model", "messages": [{"role": "user", "content": "x%d" % i}]},
                        headers=bearer)
        self.admin("POST", "config", {"quotas": {"oa-rpm-model": {"rpm": 2}}})
        st, _, obj, _ = self.c.json("POST", "/v1beta/openai/chat/completions",
                                    {"model": "oa-rpm-model", "messages": [{"role": "user", "content": "y"}]},
                                    headers=bearer)
        check("openai: 429 wrapped in an array", st == 429 and isinstance(obj, list) and
              obj[0]["error"]["status"] == "RESOURCE_EXHAUSTED", obj)
        st, _, obj, _ = self.c.json("GET", "/v1beta/openai/models", headers=bearer)
        check("openai models", st == 200 and obj["object"] == "list" and
              any(m["id"] == "models/gemini-2.5-flash" for m in obj["data"]), obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/openai/embeddings",
                                    {"model": "gemini-embedding-001", "input": ["abcd", "efgh"]}, headers=bearer)
        check("openai embeddings", st == 200 and len(obj["data"]) == 2 and
              len(obj["data"][0]["embedding"]) == 16 and obj["usage"]["prompt_tokens"] == 2, obj)

    def upload_start(self, client, key, name="notes.txt", size=11):
        return client.request("POST", "/upload/v1beta/files", body={"file": {"display_name": name}},
                              headers={"X-Goog-Upload-Protocol": "resumable",
                                       "X-Goog-Upload-Command": "start",
                                       "X-Goog-Upload-Header-Content-Length": str(size),
                                       "X-Goog-Upload-Header-Content-Type": "text/plain"}, key=key)

    def t_files(self):
        st, resp, data = self.upload_start(self.c, K1)
        url = resp.getheader("x-goog-upload-url") or ""
        check("upload start: 200 with x-goog-upload-url as addressed",
              st == 200 and url.startswith("https://localhost:%d/upload/v1beta/files?upload_id=" % self.port)
              and "upload_protocol=resumable" in url, url)
        check("upload start: x-goog-upload-status active, chunk granularity",
              resp.getheader("x-goog-upload-status") == "active" and
              resp.getheader("x-goog-upload-chunk-granularity") == "8388608")
        c2 = Client(self.port, self.ctx, host="127.0.0.1")
        st, resp2, _ = self.upload_start(c2, K1)
        c2.close()
        check("upload start: URL follows the Host the client used",
              (resp2.getheader("x-goog-upload-url") or "").startswith("https://127.0.0.1:%d/" % self.port))
        path = url[url.index("/upload/"):]
        st, resp, _ = self.c.request("POST", path, raw_body=b"hello ", key=K3,
                                     headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"})
        check("upload: another project's key is refused", st == 403)
        st, resp, _ = self.c.request("POST", path, raw_body=b"hello ", key=K2,
                                     headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"})
        check("upload: chunk accepted, still active", st == 200 and resp.getheader("x-goog-upload-status") == "active")
        st, resp, _ = self.c.request("POST", path, raw_body=b"world",
                                     headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "3"})
        check("upload: wrong offset refused", st == 400)
        st, resp, data = self.c.request("POST", path, raw_body=b"world",
                                        headers={"X-Goog-Upload-Command": "upload, finalize",
                                                 "X-Goog-Upload-Offset": "6"})
        f = json.loads(data)["file"] if st == 200 else {}
        check("upload: finalize returns the file resource", st == 200 and
              resp.getheader("x-goog-upload-status") == "final" and f["name"].startswith("files/") and
              f["sizeBytes"] == "11" and f["mimeType"] == "text/plain" and f["state"] == "ACTIVE" and
              f["displayName"] == "notes.txt" and f["uri"].endswith(f["name"]), f)
        fid = f.get("name", "files/x").split("/")[1]
        st, _, obj, _ = self.c.json("GET", "/v1beta/files/" + fid, key=K2)
        check("files: get with a key of the same project", st == 200 and obj["name"] == "files/" + fid)
        st, _, obj, _ = self.c.json("GET", "/v1beta/files/" + fid, key=K3)
        check("files: another project -> 403", st == 403 and err_of(obj) == {
            "code": 403, "status": "PERMISSION_DENIED",
            "message": "You do not have permission to access the File %s or it may not exist." % fid}, obj)
        st, _, obj, _ = self.c.json("GET", "/v1beta/files", key=K1)
        check("files: list own", st == 200 and [x["name"] for x in obj["files"]] == ["files/" + fid], obj)
        st, _, obj, _ = self.c.json("GET", "/v1beta/files", key=K3)
        check("files: list of another project is empty", st == 200 and obj == {}, obj)
        body = {"contents": [{"role": "user", "parts": [{"fileData": {"mimeType": "text/plain",
                                                                     "fileUri": f.get("uri", "")}},
                                                        {"text": "summarise"}]}]}
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent", body, key=K3)
        check("files: generateContent naming another project's file -> 403", st == 403, obj)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent", body, key=K1)
        check("files: generateContent with own file", st == 200)
        st, _, obj, _ = self.c.json("DELETE", "/v1beta/files/" + fid, key=K3)
        check("files: delete by another project -> 403", st == 403)
        st, _, obj, _ = self.c.json("DELETE", "/v1beta/files/" + fid, key=K1)
        st2, _, _, _ = self.c.json("GET", "/v1beta/files/" + fid, key=K1)
        check("files: delete, then gone", st == 200 and obj == {} and st2 == 403)

    def t_caches(self):
        body = {"model": "models/gemini-2.5-flash", "ttl": "300s", "displayName": "big doc",
                "contents": [{"role": "user", "parts": [{"text": "c" * 4000}]}]}
        st, _, obj, _ = self.c.json("POST", "/v1beta/cachedContents", body, key=K1)
        check("cachedContents: create", st == 200 and obj["name"].startswith("cachedContents/") and
              obj["usageMetadata"] == {"totalTokenCount": 1000} and obj["model"] == "models/gemini-2.5-flash"
              and "expireTime" in obj, obj)
        name = obj.get("name", "cachedContents/x")
        st, _, got, _ = self.c.json("GET", "/v1beta/" + name, key=K2)
        check("cachedContents: get, same project", st == 200 and got["name"] == name)
        st, _, got, _ = self.c.json("GET", "/v1beta/" + name, key=K3)
        check("cachedContents: another project -> 403", st == 403 and err_of(got)["status"] == "PERMISSION_DENIED")
        time.sleep(0.01)
        st, _, upd, _ = self.c.json("PATCH", "/v1beta/" + name + "?updateMask=ttl", {"ttl": "600s"}, key=K1)
        check("cachedContents: patch ttl", st == 200 and upd["expireTime"] > obj["expireTime"], upd)
        st, _, lst, _ = self.c.json("GET", "/v1beta/cachedContents", key=K1)
        st3, _, lst3, _ = self.c.json("GET", "/v1beta/cachedContents", key=K3)
        check("cachedContents: list per project", st == 200 and len(lst["cachedContents"]) == 1 and lst3 == {})
        st, _, g, _ = self.gen("gemini-2.5-flash", "hello", cachedContent=name)
        u = g.get("usageMetadata", {})
        check("cachedContents: generateContent counts the cache",
              st == 200 and u.get("cachedContentTokenCount") == 1000 and u["promptTokenCount"] == 1002, u)
        st, _, g, _ = self.gen("gemini-2.5-flash", "hello", key=K3, cachedContent=name)
        check("cachedContents: another project's generateContent -> 403", st == 403)
        st, _, d, _ = self.c.json("DELETE", "/v1beta/" + name, key=K1)
        st2, _, _, _ = self.c.json("GET", "/v1beta/" + name, key=K1)
        check("cachedContents: delete", st == 200 and d == {} and st2 == 403)

    def t_errors(self):
        st, resp, data = self.c.request("POST", "/v1beta/models/gemini-2.5-flash:generateContent",
                                        raw_body=b"{not json", headers={"x-goog-api-key": K1,
                                                                         "Content-Type": "application/json"})
        e = err_of(json.loads(data))
        check("malformed JSON -> 400 INVALID_ARGUMENT", st == 400 and e["status"] == "INVALID_ARGUMENT" and
              e["message"].startswith("Invalid JSON payload received.") and
              e["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest", e)
        st, _, obj, _ = self.c.json("POST", "/v1beta/models/gemini-2.5-flash:generateContent", {}, key=K1)
        check("no contents -> 400", st == 400 and "contents is not specified" in err_of(obj)["message"])
        for path in ("/v1beta/bogus", "/nothing/here", "/v1beta/models/x:frobnicate"):
            st, resp, obj, _ = self.c.json("POST", path, {}, key=K1)
            check("unknown path %s -> 404 in Google's shape" % path,
                  st == 404 and err_of(obj)["status"] == "NOT_FOUND" and err_of(obj)["code"] == 404 and
                  resp.getheader("Content-Type") == "application/json; charset=UTF-8", obj)
        self.admin("POST", "config", {"models": ["gemini-2.5-flash"]})
        st, _, obj, _ = self.gen("gemini-9-ultra", "x")
        check("models list in config: unknown model -> 404", st == 404 and
              err_of(obj)["message"].startswith("models/gemini-9-ultra is not found for API version v1beta"), obj)
        self.admin("POST", "config", {"models": None})
        st, _, _, _ = self.gen("gemini-9-ultra", "x")
        check("models: null accepts any model name", st == 200)
        # chunked request body
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=10)
        conn.putrequest("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
        conn.putheader("x-goog-api-key", K1)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        payload = json.dumps(gen_body("chunked upload body")).encode()
        for part in (payload[:10], payload[10:]):
            conn.send(b"%X\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        r.read()
        conn.close()
        check("chunked request bodies are read", r.status == 200)

    # -- faults -----------------------------------------------------------
    def raw(self, path, text, timeout=5.0):
        """A TLS connection driven through MemoryBIOs over a plain socket, so that a
        TCP reset shows as ConnectionResetError (the ssl module reports it as EOF)."""
        s = BioTLS(self.ctx, self.port, timeout)
        body = json.dumps(gen_body(text)).encode()
        s.sendall(("POST %s HTTP/1.1\r\nHost: localhost:%d\r\nx-goog-api-key: %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % (path, self.port, K1, len(body))).encode() + body)
        return s

    @staticmethod
    def read_until(s, marker, count=1, limit=1 << 20):
        buf = b""
        while buf.count(marker) < count and len(buf) < limit:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        return buf

    @staticmethod
    def drain(s):
        """Bytes until EOF; ('eof'|'reset'|'timeout', bytes)."""
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    return "eof", buf
                buf += d
        except ConnectionResetError:
            return "reset", buf
        except socket.timeout:
            return "timeout", buf

    def t_faults(self):
        sse = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        s = self.raw(sse, "STANDIN:fault=reset_midstream STANDIN:chunks=3")
        head = self.read_until(s, b"\r\n\r\n", 2)
        how, rest = self.drain(s)
        s.close()
        check("fault reset_midstream: headers and first event, then reset",
              head.startswith(b"HTTP/1.1 200") and b"data: {" in head and how == "reset" and
              b"0\r\n\r\n" not in rest, (how, head[-60:], rest[:60]))
        s = self.raw("/v1beta/models/gemini-2.5-flash:generateContent", "STANDIN:fault=reset_midstream")
        how, data = self.drain(s)
        s.close()
        cl = re.search(rb"Content-Length: (\d+)", data)
        body = data.split(b"\r\n\r\n", 1)[-1]
        check("fault reset_midstream (non-stream): short body, then reset",
              how == "reset" and cl is not None and len(body) < int(cl.group(1)), (how, data[:80]))
        gen = "/v1beta/models/gemini-2.5-flash:generateContent"
        s = self.raw(sse, "STANDIN:fault=close_midstream STANDIN:chunks=3")
        head = self.read_until(s, b"\r\n\r\n", 2)
        how, rest = self.drain(s)
        s.close()
        check("fault close_midstream: first event, then a clean close without the last chunk",
              how == "eof" and (head + rest).count(b"data: ") == 1 and b"0\r\n\r\n" not in rest,
              (how, rest[:60]))
        s = self.raw(gen, "STANDIN:fault=close_midstream")
        how, data = self.drain(s)
        s.close()
        cl = re.search(rb"Content-Length: (\d+)", data)
        body = data.split(b"\r\n\r\n", 1)[-1]
        check("fault close_midstream (non-stream): short body, then a clean close",
              how == "eof" and cl is not None and 0 < len(body) < int(cl.group(1)), (how, data[:80]))
        s = self.raw(gen, "STANDIN:framing=chunked")
        how, data = self.drain(s)
        s.close()
        check("framing=chunked: a whole non-stream answer in chunks",
              b"Transfer-Encoding: chunked" in data and data.endswith(b"\r\n0\r\n\r\n") and
              b"Content-Length" not in data, data[-80:])
        for text, what in (("STANDIN:fault=cut_chunk STANDIN:chunks=3", "stream"),
                           ("STANDIN:fault=cut_chunk STANDIN:framing=chunked", "non-stream")):
            s = self.raw(sse if what == "stream" else gen, text)
            how, data = self.drain(s)
            s.close()
            body = data.split(b"\r\n\r\n", 1)[-1]
            sizes = re.findall(rb"(?:^|\r\n)([0-9A-F]+)\r\n", body)
            last = body.rsplit(b"\r\n", 1)
            check("fault cut_chunk (%s): a chunk cut in its middle, then a clean close" % what,
                  how == "eof" and len(sizes) == 2 and int(sizes[-1], 16) > len(last[-1]),
                  (how, body[-120:]))
        s = self.raw(sse, "STANDIN:fault=bad_chunk STANDIN:chunks=3")
        how, data = self.drain(s)
        s.close()
        check("fault bad_chunk: a size line that is no number after the first event",
              how == "eof" and b"\r\nzz-not-a-size\r\n" in data, (how, data[-80:]))
        s = self.raw(sse, "STANDIN:fault=garbage")
        how, data = self.drain(s)
        s.close()
        check("fault garbage: bytes that are not HTTP", len(data) > 0 and not data.startswith(b"HTTP/"), data[:40])
        s = self.raw(sse, "STANDIN:fault=close_before_headers")
        how, data = self.drain(s)
        s.close()
        check("fault close_before_headers: closed with no answer", how in ("eof", "reset") and data == b"",
              (how, data[:40]))
        seq = self.last_seq()
        s = self.raw(sse, "STANDIN:fault=stall", timeout=1.2)
        t0 = time.time()
        how, data = self.drain(s)
        s.close()
        check("fault stall: nothing arrives", how == "timeout" and data == b"" and time.time() - t0 >= 1.0,
              (how, data[:40]))
        e = self.log_since(seq)
        check("fault stall: logged with status null", e and e[0].get("fault") == "stall" and e[0]["status"] is None, e)
        s = self.raw(sse, "STANDIN:fault=stall_midstream", timeout=1.5)
        head = self.read_until(s, b"\r\n\r\n", 2)
        how, rest = self.drain(s)
        s.close()
        check("fault stall_midstream: first event then silence",
              head.startswith(b"HTTP/1.1 200") and b"data: {" in head + rest and how == "timeout" and
              (head + rest).count(b"data: ") == 1, (how, (head + rest)[-80:]))
        resp, events, raw = self.read_stream(sse, gen_body("STANDIN:fault=error_midstream STANDIN:chunks=3"))
        objs = [json.loads(ev[6:]) for _, ev in events]
        check("fault error_midstream: an {\"error\"} chunk after the first event",
              len(objs) == 2 and "candidates" in objs[0] and objs[1]["error"]["code"] == 503 and
              raw.endswith(b"\r\n\r\n"), objs)
        st, _, _, _ = self.c.json("GET", "/__standin/healthz")
        check("faults: the stand-in still serves", st == 200)

    def t_admin_log(self):
        st, _, obj, _ = self.admin("POST", "config", {"keys": {KNEW: {"project": "p3"}}})
        st2, _, _, _ = self.gen("gemini-2.5-flash", "new key", key=KNEW)
        check("admin config: merge adds a key at run time", st == 200 and KNEW in obj["keys"] and K1 in obj["keys"]
              and st2 == 200)
        self.admin("POST", "config", {"keys": {KNEW: {"project": "p3", "state": "suspended"}}})
        st, _, _, _ = self.gen("gemini-2.5-flash", "new key", key=KNEW)
        check("admin config: a key's state changes at run time", st == 403)
        self.admin("POST", "config", {"keys": {KNEW: None}})
        st, _, _, _ = self.gen("gemini-2.5-flash", "new key", key=KNEW)
        check("admin config: null removes a key", st == 400)
        st, _, cfg, _ = self.admin("GET", "config")
        check("admin config: GET shows the config", st == 200 and cfg["quotas"]["rpm-model"] == {"rpm": 3})
        st, _, _, _ = self.admin("POST", "reset")
        log = self.admin("GET", "log")[2]
        check("admin reset: log cleared", st == 200 and log == [])
        self.gen("rpm-model", "after reset 1")
        self.gen("rpm-model", "after reset 2")
        log = self.admin("GET", "log")[2]
        check("admin reset: seq restarts at 1, windows cleared",
              [e["seq"] for e in log] == [1, 2] and all(e["status"] == 200 for e in log), log)
        keys = {"seq", "time", "key", "key_source", "project", "model", "path", "method", "status",
                "stream", "prompt", "candidates", "cached", "thoughts", "total"}
        check("log: entries have all fields", all(keys <= set(e) for e in log), log[0])
        with open(self.logpath) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        check("--log: JSON lines written", len(lines) >= 50 and lines[-1] == log[-1], len(lines))

    def t_probes(self):
        before = self.admin("GET", "probes")[2]
        st1, _, _, _ = self.c.json("GET", "/v1beta/models?pageSize=1", key=K1)
        st2, _, _, _ = self.c.json("GET", "/v1beta/models?pageSize=1", key=KINV)
        st3, _, _, _ = self.c.json("GET", "/v1beta/models?pageSize=1", key=KSUS)
        self.c.json("GET", "/v1beta/models", key=K1)   # not a probe: page of 50
        after = self.admin("GET", "probes")[2]
        by = after["by_key"]
        old = before["by_key"]
        check("probes: 200 / 400 / 403 for active / invalid / suspended keys",
              (st1, st2, st3) == (200, 400, 403), (st1, st2, st3))
        check("probes: counted per key, whatever the answer; a full page is no probe",
              [by.get(k, 0) - old.get(k, 0) for k in (K1, KINV, KSUS)] == [1, 1, 1] and
              after["total"] == before["total"] + 3, after)
        check("probes: counted per second", after["max_per_second"] >= 1 and
              sum(after["by_second"].values()) == after["total"], after)

    def t_concurrency(self):
        self.admin("POST", "reset")
        n = 20
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            text = "c%02d " % i + "x" * (40 * (i + 1) - 4)
            cl = Client(self.port, self.ctx)
            try:
                barrier.wait(10)
                if i % 2:
                    resp, events, raw = self.read_stream(
                        "/v1beta/models/conc-model:streamGenerateContent?alt=sse",
                        gen_body(text + " STANDIN:delay_ms=50"), key=(K1 if i % 4 == 1 else K2))
                    results[i] = (resp.status, tokens(len(text + " STANDIN:delay_ms=50")))
                else:
                    st, _, _, _ = self.gen("conc-model", text, key=K1, client=cl)
                    results[i] = (st, tokens(len(text)))
            except Exception as e:  # noqa: BLE001
                results[i] = ("exc", repr(e))
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        sts = [r[0] for r in results]
        check("concurrency: 20 parallel requests, 15 pass, 5 get 429 (rpm 15)",
              sts.count(200) == 15 and sts.count(429) == 5, results)
        log = self.admin("GET", "log")[2]
        check("concurrency: log has exactly 20 entries, seq 1..20",
              [e["seq"] for e in log] == list(range(1, 21)), [e["seq"] for e in log])
        ok_prompts = sorted(r[1] for r in results if r[0] == 200)
        check("concurrency: log prompts of the 200s match the clients that got 200",
              sorted(e["prompt"] for e in log if e["status"] == 200) == ok_prompts)
        check("concurrency: log statuses match", sorted(e["status"] for e in log) == sorted(sts))
        st, _, obj, _ = self.admin("GET", "usage")
        row = [r for r in obj["usage"] if r["model"] == "conc-model"][0]
        check("concurrency: window accounting exact", row["rpm_used"] == 15 and row["tpm_used"] == sum(ok_prompts), row)

    # -- the Live API ---------------------------------------------------------
    def ws(self, path=LIVE, key=K1, **kw):
        return WSClient(self.port, self.ctx, path, key=key, **kw)

    def live_setup(self, model="gemini-2.5-flash", key=K1, path=LIVE, **setup):
        w = self.ws(path, key=key)
        setup["model"] = "models/" + model
        w.send({"setup": setup})
        return w, w.recv()

    @staticmethod
    def bye(w):
        """Close 1000 and wait for the server's close and its end of the
        connection (its log entry is written by then)."""
        w.close(1000)
        w.closed()
        w.eof()
        w.shut()

    def live_entry(self, since):
        """The log entries of Live sessions after seq since (waits for the
        session's end to be logged)."""
        for _ in range(50):
            out = [e for e in self.log_since(since) if e.get("kind") == "live"]
            if out:
                return out
            time.sleep(0.05)
        return []

    def t_live_handshake(self):
        for path in (LIVE, LIVE.replace("v1beta", "v1"), LIVE.replace("v1beta", "v1alpha"),
                     LIVE + "Constrained", "/" + LIVE.replace("v1beta", "v1")):
            w = self.ws(path)
            ok = w.status == 101 and w.accept_ok() and \
                w.headers.get("upgrade", "").lower() == "websocket"
            w.send({"setup": {"model": "models/gemini-2.5-flash"}})
            m = w.recv()
            check("live handshake: 101, Sec-WebSocket-Accept, setupComplete on %s" % path,
                  ok and m[0] == "msg" and m[1] == {"setupComplete": {}}, (w.status, w.headers, m))
            w.close(1000)
            w.shut()
        # RFC 6455 section 1.3's own example, independent of our GUID.
        w = self.ws(wskey="dGhlIHNhbXBsZSBub25jZQ==")
        check("live handshake: the RFC 6455 sample key gets the RFC's Sec-WebSocket-Accept",
              w.headers.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", w.headers)
        w.shut()
        w = self.ws(headers={"Sec-WebSocket-Version": "8"})
        check("live handshake: version 8 refused with 426 and Sec-WebSocket-Version: 13",
              w.status == 426 and w.headers.get("sec-websocket-version") == "13", (w.status, w.headers))
        w = self.ws(headers={"Sec-WebSocket-Key": "c2hvcnQ="})
        check("live handshake: a key that is not 16 bytes base64 is refused with 400", w.status == 400,
              w.status)
        w = self.ws(headers={"Upgrade": None, "Connection": None})
        check("live handshake: a GET without Upgrade is refused with 400", w.status == 400, w.status)

    def t_live_text_turn(self):
        seq = self.last_seq()
        w, m = self.live_setup(systemInstruction={"parts": [{"text": "Be brief."}]},
                               generationConfig={"responseModalities": ["TEXT"]})
        check("live: setupComplete comes in a binary frame, as Google sends it",
              m == ("msg", {"setupComplete": {}}, 2), m)
        w.send(live_turn("Hello there, stand-in."))
        msgs = w.until(turn_complete)
        parts = [p for x in msgs if x[0] == "msg"
                 for p in ((x[1].get("serverContent") or {}).get("modelTurn") or {}).get("parts", [])]
        gen_done = any((x[1].get("serverContent") or {}).get("generationComplete")
                       for x in msgs if x[0] == "msg")
        last = msgs[-1][1]
        u = last.get("usageMetadata") or {}
        check("live: a text turn gets modelTurn text parts, generationComplete, turnComplete",
              len(parts) == 2 and all("text" in p for p in parts) and gen_done and
              turn_complete(msgs[-1]), msgs)
        prompt = tokens(len("Be brief.") + len("Hello there, stand-in."))
        check("live: usageMetadata on turnComplete: prompt, response, total and details",
              u.get("promptTokenCount") == prompt and u.get("responseTokenCount") == 10 and
              u.get("totalTokenCount") == prompt + 10 and
              u.get("promptTokensDetails") == [{"modality": "TEXT", "tokenCount": prompt}] and
              u.get("responseTokensDetails") == [{"modality": "TEXT", "tokenCount": 10}], u)
        w.send(live_turn("Again STANDIN:candidates=3 STANDIN:chunks=1"))
        msgs = w.until(turn_complete)
        u2 = msgs[-1][1].get("usageMetadata") or {}
        check("live: the second turn's prompt counts the whole session so far",
              u2.get("promptTokenCount", 0) > prompt and u2.get("responseTokenCount") == 3 and
              len(msgs) == 3, (u2, msgs))
        w.close(1000, "bye")
        c = w.closed()
        check("live: a client close 1000 is answered with close 1000", c and c[0] == 1000, c)
        check("live: server frames are never masked", not getattr(w, "masked_seen", True))
        e = self.live_entry(seq)
        e = e[0] if e else {}
        check("live log: key, project, model, messages, usage, close code",
              e.get("key") == K1 and e.get("project") == "p1" and e.get("model") == "gemini-2.5-flash"
              and e.get("status") == 101 and e.get("received") == ["setup", "clientContent", "clientContent"]
              and e.get("turns") == 2 and e.get("prompt") == prompt + u2["promptTokenCount"]
              and e.get("candidates") == 13 and e.get("close_code") == 1000
              and e.get("closed_by") == "client" and e.get("client_close") == [1000, "bye"]
              and e.get("sent", [None])[0] == "setupComplete", e)

    def t_live_framing(self):
        w = self.ws()
        body = json.dumps({"setup": {"model": "models/gemini-2.5-flash"}}).encode()
        w.frame(0x1, body[:5], fin=False)
        w.frame(0x9, b"ping-1")
        w.frame(0x0, body[5:12], fin=False)
        w.frame(0x0, body[12:], fin=True)
        a, b = w.recv(), w.recv()
        check("live frames: a fragmented text message with a ping between its fragments",
              a == ("pong", b"ping-1", None) and b[0] == "msg" and b[1] == {"setupComplete": {}},
              (a, b))
        big = base64.b64encode(b"\x01\x02" * (384 * 1024)).decode()  # ~1 MB frame
        w.send({"realtimeInput": {"audio": {"data": big, "mimeType": "audio/pcm;rate=16000"}}},
               binary=True)
        w.send({"realtimeInput": {"audioStreamEnd": True}}, binary=True)
        msgs = w.until(turn_complete)
        u = msgs[-1][1].get("usageMetadata") or {}
        check("live frames: a 1 MB binary realtimeInput audio frame, then audioStreamEnd, is answered",
              turn_complete(msgs[-1]) and {"modality": "AUDIO", "tokenCount": 787}
              in u.get("promptTokensDetails", []), u)
        w.frame(0x1, b"\xff\xfe not utf-8")
        c = w.closed()
        check("live frames: invalid UTF-8 in a text frame closes with 1007", c and c[0] == 1007, c)
        w.shut()
        for label, kw, code in (("an unmasked client frame", {"mask": False}, 1002),
                                ("a reserved bit", {"rsv": 0x40}, 1002)):
            w = self.ws()
            w.frame(0x1, b'{"setup": {"model": "models/gemini-2.5-flash"}}', **kw)
            c = w.closed()
            check("live frames: %s closes with %d" % (label, code), c and c[0] == code, c)
            w.shut()
        w = self.ws()
        w.frame(0x9, b"x" * 126)
        c = w.closed()
        check("live frames: a ping over 125 bytes closes with 1002", c and c[0] == 1002, c)
        w.shut()
        w = self.ws()
        w.frame(0x1, b"not json")
        c = w.closed()
        check("live: a message that is no JSON closes with 1007", c and c[0] == 1007, c)
        w.shut()
        w = self.ws()
        w.send(live_turn("hi"))
        c = w.closed()
        check("live: clientContent before setup closes with 1007", c and c[0] == 1007, c)
        w.shut()
        w, _ = self.live_setup()
        w.close(4001, "app done")
        c = w.closed()
        check("live: a client close code 4001 is echoed", c and c[0] == 4001, c)
        w.shut()
        w, _ = self.live_setup()
        w.frame(0x8, struct.pack("!H", 1005))
        c = w.closed()
        check("live: a client close with the reserved code 1005 is a protocol error (1002)",
              c and c[0] == 1002, c)
        w.shut()

    def t_live_auth(self):
        seq = self.last_seq()
        for label, kw, code, text in (
                ("an invalid key", {"key": KINV}, 1007, "API key not valid"),
                ("an unknown key", {"key": "AIzaSyST-nobody-0000000000000000000"}, 1007,
                 "API key not valid"),
                ("a suspended key", {"key": KSUS}, 1008, "has been suspended"),
                ("no key", {"key": None}, 1008, "unregistered callers")):
            w, m = self.live_setup(**kw)
            check("live auth: %s: handshake 101, then close %d at setup" % (label, code),
                  w.status == 101 and m[0] == "close" and m[1] == code and text in m[2], m)
            w.shut()
        w = self.ws(LIVE + "?key=" + K2, key=None)
        w.send({"setup": {"model": "models/gemini-2.5-flash"}})
        ok1 = w.recv()[0] == "msg"
        w.shut()
        w = self.ws(LIVE + "Constrained?access_token=" + K3, key=None)
        w.send({"setup": {"model": "models/gemini-2.5-flash"}})
        ok2 = w.recv()[0] == "msg"
        w.shut()
        # Six sessions, each logged as it ends: the refused ones end when
        # their close handshake does, so their order is not the clients'.
        for _ in range(100):
            ents = [e for e in self.log_since(seq) if e.get("kind") == "live"]
            if len(ents) >= 6:
                break
            time.sleep(0.05)
        srcs = sorted((e["key_source"], e["project"]) for e in ents
                      if e["key_source"] in ("query", "access_token"))
        check("live auth: ?key= and ?access_token= are accepted, and logged by source",
              ok1 and ok2 and srcs == [("access_token", "p2"), ("query", "p1")], (ok1, ok2, srcs))
        refused = sorted(e.get("close_code") for e in ents
                         if e["key_source"] not in ("query", "access_token"))
        check("live auth: refusals are logged with their close code",
              refused == [1007, 1007, 1008, 1008], ents)

    def t_live_tools_resume(self):
        tools = [{"functionDeclarations": [{"name": "get_weather", "description": "weather",
                                            "parameters": {"type": "OBJECT"}}]}]
        w, m = self.live_setup(tools=tools, sessionResumption={})
        w.send(live_turn("please call get_weather for Paris"))
        tc = w.recv()
        fcs = (tc[1].get("toolCall") or {}).get("functionCalls") or [{}] if tc[0] == "msg" else [{}]
        check("live tools: a declared function named in the text gets a toolCall with an id",
              fcs[0].get("name") == "get_weather" and fcs[0].get("id") and
              "usageMetadata" in tc[1], tc)
        w.send({"toolResponse": {"functionResponses": [
            {"id": fcs[0].get("id"), "name": "get_weather", "response": {"sky": "clear"}}]}})
        msgs = w.until(turn_complete)
        texts = "".join(p.get("text", "") for x in msgs if x[0] == "msg" for p in
                        ((x[1].get("serverContent") or {}).get("modelTurn") or {}).get("parts", []))
        check("live tools: the toolResponse is answered, then turnComplete",
              "Function get_weather answered" in texts and turn_complete(msgs[-1]), msgs)
        upd = w.recv()
        handle = ((upd[1] if upd[0] == "msg" else {}).get("sessionResumptionUpdate") or {})
        check("live resumption: sessionResumptionUpdate with a new handle after the turn",
              handle.get("resumable") is True and handle.get("newHandle"), upd)
        self.bye(w)
        seq = self.last_seq()
        w, m = self.live_setup(sessionResumption={"handle": handle.get("newHandle")})
        check("live resumption: a session resumed by its handle gets setupComplete",
              m[0] == "msg" and "setupComplete" in m[1], m)
        self.bye(w)
        e = self.live_entry(seq)
        check("live resumption: logged as resumed", e and e[0].get("resumed") is True, e)
        w, m = self.live_setup(sessionResumption={"handle": "no-such-handle"})
        check("live resumption: an unknown handle closes with 1008", m[0] == "close" and m[1] == 1008, m)
        w.shut()
        w, m = self.live_setup(tools=tools)
        w.send({"toolResponse": {"functionResponses": [{"id": "nope", "name": "x", "response": {}}]}})
        c = w.closed()
        check("live tools: a toolResponse for no pending call closes with 1007", c and c[0] == 1007, c)
        w.shut()

    def t_live_knobs(self):
        self.admin("POST", "config", {"live": {"goaway_after": 2, "goaway_time_left": "5s"}})
        w, m = self.live_setup()
        w.send(live_turn("one STANDIN:chunks=1"))
        msgs = w.until(lambda x: x[0] == "msg" and "goAway" in x[1])
        check("live knobs: goaway_after 2 sends goAway after the client's second message",
              msgs[-1][1] == {"goAway": {"timeLeft": "5s"}} and turn_complete(msgs[-2]), msgs)
        w.close()
        w.shut()
        self.admin("POST", "config", {"live": {"refuse_handshakes": 1}})
        w = self.ws()
        err = json.loads(w.body or b"{}").get("error", {})
        check("live knobs: refuse_handshakes answers the next handshake 429 in the quota shape",
              w.status == 429 and err.get("status") == "RESOURCE_EXHAUSTED" and
              any("QuotaFailure" in d.get("@type", "") for d in err.get("details", [])),
              (w.status, w.body[:200]))
        w.shut()
        w = self.ws()
        check("live knobs: ... and only that many", w.status == 101, w.status)
        w.shut()
        self.admin("POST", "config", {"live": {"refuse_setups": 1, "refuse_code": 1011,
                                               "refuse_reason": "Internal error encountered."}})
        w, m = self.live_setup()
        check("live knobs: refuse_setups closes the next setup with its code and reason",
              m == ("close", 1011, "Internal error encountered."), m)
        w.shut()
        w, m = self.live_setup()
        check("live knobs: ... and only that many", m[0] == "msg" and "setupComplete" in m[1], m)
        w.send(live_turn("now STANDIN:goaway=1 STANDIN:chunks=1"))
        msgs = w.until(turn_complete)
        check("live magic: STANDIN:goaway=1 sends goAway before the answer",
              msgs[0][1] == {"goAway": {"timeLeft": "10s"}} if msgs[0][0] == "msg" else False, msgs)
        w.send(live_turn("STANDIN:close=4003"))
        c = w.closed()
        check("live magic: STANDIN:close=4003 closes with 4003", c and c[0] == 4003, c)
        w.shut()
        self.admin("POST", "config", {"live": {"frames": "text", "goaway_after": None}})
        w, m = self.live_setup()
        check("live knobs: frames text sends text frames", m[0] == "msg" and m[2] == 1, m)
        w.shut()
        self.admin("POST", "config", {"live": None})

    def t_live_quota(self):
        self.admin("POST", "config", {"quotas": {"live-rpd-model": {"rpd": 2}}})
        seq = self.last_seq()
        got = []
        for i in range(3):
            w, m = self.live_setup("live-rpd-model", key=(K1, K2, K1)[i])
            got.append(m)
            self.bye(w)
        check("live quota: a session is one request; past the project's rpd, the setup is "
              "closed 1011 RESOURCE_EXHAUSTED",
              [x[0] for x in got] == ["msg", "msg", "close"] and got[2][1] == 1011 and
              got[2][2].startswith("RESOURCE_EXHAUSTED") and len(got[2][2].encode()) <= 123, got)
        w, m = self.live_setup("live-rpd-model", key=K3)
        check("live quota: another project's key still gets its session",
              m[0] == "msg" and "setupComplete" in m[1], m)
        w.send(live_turn("STANDIN:quota=tpm"))
        c = w.closed()
        check("live quota: STANDIN:quota= closes the session 1011 mid-way",
              c and c[0] == 1011 and "RESOURCE_EXHAUSTED" in c[1], c)
        w.shut()
        ents = [e for e in self.live_entry(seq)]
        time.sleep(0.2)
        ents = [e for e in self.log_since(seq) if e.get("kind") == "live"]
        check("live quota: the quota close is logged with its code and kind",
              [e.get("close_code") for e in ents] == [1000, 1000, 1011, 1011] and
              ents[2].get("quota") == ["rpd"] and ents[3].get("quota") == ["tpm"],
              [(e.get("close_code"), e.get("quota")) for e in ents])

    def t_sigterm(self):
        s = self.raw("/v1beta/models/gemini-2.5-flash:generateContent", "STANDIN:fault=stall", timeout=10)
        time.sleep(0.2)
        t0 = time.time()
        rc = self.s.stop()
        s.close()
        check("SIGTERM: exits 0 promptly even with a stalled connection", rc == 0 and time.time() - t0 < 5,
              (rc, time.time() - t0))

    def run(self):
        tests = [self.t_tls, self.t_generate, self.t_key_errors, self.t_sse, self.t_json_array,
                 self.t_count_embed, self.t_models, self.t_quota, self.t_throttle,
                 self.t_implicit_cache,
                 self.t_status_magic, self.t_openai, self.t_files, self.t_caches, self.t_errors,
                 self.t_faults, self.t_admin_log, self.t_probes, self.t_concurrency,
                 self.t_live_handshake, self.t_live_text_turn, self.t_live_framing,
                 self.t_live_auth, self.t_live_tools_resume, self.t_live_knobs,
                 self.t_live_quota,
                 self.t_sigterm]
        only = sys.argv[1:]
        for t in tests:
            if only and not any(o in t.__name__ for o in only):
                continue
            try:
                t()
            except Exception:  # noqa: BLE001
                check("%s raised no exception" % t.__name__, False, traceback.format_exc())
                self.c.close()
                self.c = Client(self.port, self.ctx)


def main():
    tmp = tempfile.mkdtemp(prefix="standin-selftest-")
    certdir = os.path.join(tmp, "certs")
    suite = None
    try:
        t0 = time.time()
        r = subprocess.run(["sh", MKCA, certdir], capture_output=True, text=True)
        check("mkca.sh makes the certificates", r.returncode == 0, r.stderr)
        check("mkca.sh is fast", time.time() - t0 < 10, time.time() - t0)
        if r.returncode == 0:
            suite = Suite(certdir, tmp)
            suite.run()
    except Exception:  # noqa: BLE001
        check("selftest raised no exception", False, traceback.format_exc())
    finally:
        if suite and suite.s.proc.poll() is None:
            suite.s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
