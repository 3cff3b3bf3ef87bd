"""The Live API (BidiGenerateContent over WebSocket) through the proxy,
against the stand-in Gemini's Live endpoint (CONTRACT.md "Live API
(WebSocket)").

The proxy answers the client's handshake itself (101, or an HTTP error in
Gemini's shape before any upgrade), reads the client's first message,
which must be setup, chooses a key for setup.model, and only then opens
the upstream session; refusals before setupComplete (a 1011 quota close,
an invalid key's 1007, a handshake error) are retried on the next key, so
the client sees one clean session.  From there frames relay both ways,
close codes included; usageMetadata is metered per key x model and the
session is one request; models' sessions_limit caps open sessions per
project; /api/status_data shows models[m].live_sessions, /metrics
gemini_looper_live_sessions{model}.  Workers dying, reloads, stops and
the proxy's own pings (config "live": {"ping_s": N}) are covered too.

The raw client is tests/it/wsclient.py; test_wsclient_against_standin
proves it against the stand-in directly (no daemon).
"""
import base64
import json
import os
import re
import signal
import subprocess
import time

from lib import wait_for
from standin import (FLASH, K1, K2, K3, KINV, KSUS, POOL_KEYS, PRO,
                     StandIn, ca_file, mask, proxy_daemon)
from test_live_standin import _have_sdk, SDK
from test_proxy import cell, counts_of, finish, gen, no_full_keys, status_data
from wsclient import (LIVE, OP_BIN, WSClient, live_path, live_turn,
                      texts_of, turn_complete, usage_of)

TOKEN = "live-access-token-of-the-client-0001"
CLIENT_KEY = "AIzaSyClientOwnKeyThatMustNotLeave00cl01"
TOOLS = [{"functionDeclarations": [{
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "OBJECT",
                   "properties": {"city": {"type": "STRING"}}}}]}]
QUOTA_REASON = ("RESOURCE_EXHAUSTED: You exceeded your current quota, "
                "please check your plan and billing details.")
AUDIO = b"\x01\x02" * (384 * 1024)     # 786,432 bytes: 787 audio tokens


# --------------------------------------------------------------------------
# helpers

def live_daemon(standin=None, **over):
    """A stand-in and a started proxy in front of it."""
    si = StandIn(standin)
    d = proxy_daemon(si, **over)
    d.start()
    return si, d


def connect(d, path=LIVE, **kw):
    return WSClient(d.port, path, **kw)


def upgraded(d, path=LIVE, **kw):
    """A connection to the proxy whose handshake got its 101."""
    w = connect(d, path, **kw)
    assert w.status == 101, (path, w.status, w.body[:300])
    return w


def session(d, model="models/" + FLASH, path=LIVE, **setup):
    """A Live session through the proxy, setupComplete received (model as
    the client names it: "models/x" or "x")."""
    w = upgraded(d, path)
    m = w.setup(model, **setup)
    assert m[0] == "msg" and m[1] == {"setupComplete": {}}, m
    return w


def sessions(si, since=0):
    """The stand-in's Live session entries (written when a session ends)."""
    return [e for e in si.log(since) if e.get("kind") == "live"]


def wait_sessions(si, n, since=0, timeout=10):
    """Wait until the stand-in has logged at least n Live sessions."""
    return wait_for(lambda: (lambda s: s if len(s) >= n else None)(
        sessions(si, since)), timeout, "%d stand-in Live sessions" % n)


def model_of(d, model=FLASH):
    return status_data(d)["models"].get(model) or {}


def live_open(d, model=FLASH):
    return model_of(d, model).get("live_sessions")


def metric(d, name, model=FLASH):
    st, _, raw = d.request("GET", "/metrics")
    assert st == 200, st
    m = re.search(r'^%s\{model="%s"\} (\d+)$' % (name, re.escape(model)),
                  raw.decode(), re.M)
    return int(m.group(1)) if m else None


def gemini_error(w, code):
    """A refused handshake: HTTP code, Gemini's error shape, no upgrade."""
    assert w.status == code, (w.status, w.headers, w.body[:300])
    assert "sec-websocket-accept" not in w.headers, w.headers
    e = w.error()
    assert e.get("code") == code and isinstance(e.get("message"), str) \
        and isinstance(e.get("status"), str), w.body[:300]
    return e


def pump(w, seconds):
    """Read (answering pings) for seconds; the messages seen."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            out.append(w.recv(left))
        except OSError:     # socket.timeout
            return out


def live_worker(d):
    """The pid of the worker that holds the Live session, from the
    scoreboard in /api/status_data (whose request lines are cut to 63
    bytes: "GET /ws/google.ai.generativelanguage.v1beta.GenerativeSe...")."""
    ws = [w for w in status_data(d)["workers"]
          if "/ws/" in (w.get("request") or "")]
    assert len(ws) == 1 and ws[0]["pid"], status_data(d)["workers"]
    return ws[0]["pid"]


# --------------------------------------------------------------------------
# the raw client itself, straight against the stand-in (no daemon)

def test_wsclient_against_standin():
    """wsclient.py speaks RFC 6455 as the stand-in (and so Google) wants:
    handshake, masked and fragmented frames with pings between them,
    binary frames of a megabyte, close codes both ways."""
    si = StandIn()
    w = WSClient(si.port, live_path("v1"), key=K1, tls=si.ctx)
    assert w.status == 101 and w.accept_ok(), (w.status, w.headers)
    body = json.dumps({"setup": {"model": "models/" + FLASH}}).encode()
    w.send_bytes(body, fragments=3, ping=b"between")
    got = w.until(lambda m: m[0] == "msg")
    assert ("pong", b"between", None) in got, got
    assert ("msg", {"setupComplete": {}}, OP_BIN) in got, got
    msgs = w.turn("Hello from the raw client.", fragments=3, ping=b"p2")
    assert ("pong", b"p2", None) in msgs, msgs
    assert turn_complete(msgs[-1]) and len(texts_of(msgs)) == 2, msgs
    w.send({"realtimeInput": {"audio": {
        "data": base64.b64encode(AUDIO).decode(),
        "mimeType": "audio/pcm;rate=16000"}}}, binary=True)
    w.send({"realtimeInput": {"audioStreamEnd": True}}, binary=True)
    msgs = w.until(turn_complete)
    u = usage_of(msgs)[-1]
    assert {"modality": "AUDIO", "tokenCount": 787} in \
        u["promptTokensDetails"], u
    w.ping(b"hello")
    assert w.recv() == ("pong", b"hello", None)
    assert w.bye(4000, "bye") == (4000, ""), "the stand-in echoes the code"
    assert not w.masked_seen
    e = wait_sessions(si, 1)[0]
    assert e["client_close"] == [4000, "bye"] and e["turns"] == 2, e
    assert e["audio_bytes"] == len(AUDIO), e
    assert e["received"] == ["setup", "clientContent", "realtimeInput",
                             "realtimeInput"], e

    # A server close with its reason, and the protocol checks the proxy
    # tests rely on.
    w = WSClient(si.port, LIVE, key=K1, tls=si.ctx)
    w.setup(FLASH)
    w.send(live_turn("STANDIN:close=4001"))
    assert w.closed() == (4001, "Closed by STANDIN:close=4001."), "4001"
    w.shut()
    w = WSClient(si.port, LIVE, key=K1, tls=si.ctx)
    w.frame(1, b'{"setup": {"model": "models/gemini-2.5-flash"}}',
            mask=False)
    assert w.closed()[0] == 1002
    w.shut()
    w = WSClient(si.port, LIVE, key=K1, tls=si.ctx)
    w.setup(FLASH)
    w.frame(1, b"\xff\xfe not utf-8")
    assert w.closed()[0] == 1007
    w.shut()
    w = WSClient(si.port, LIVE, key=K1, tls=si.ctx,
                 headers={"Sec-WebSocket-Version": "8"})
    assert w.status == 426 and w.headers["sec-websocket-version"] == "13"
    w.shut()


# --------------------------------------------------------------------------
# the handshake

def test_live_handshake_paths():
    """Every version, the Constrained method and @google/genai's "//ws/"
    get a 101 from the proxy itself, then the session."""
    si, d = live_daemon()
    paths = [(live_path(v), v) for v in ("v1", "v1beta", "v1alpha")]
    paths += [(live_path("v1beta", constrained=True), "v1beta"),
              (live_path("v1", slashes=2), "v1"),
              (live_path("v1beta", constrained=True, slashes=2), "v1beta")]
    for path, _ in paths:
        w = connect(d, path)
        assert w.status == 101, (path, w.status, w.body[:300])
        assert w.accept_ok(), (path, w.headers)
        assert w.headers.get("upgrade", "").lower() == "websocket", w.headers
        assert "upgrade" in w.headers.get("connection", "").lower()
        m = w.setup(FLASH)
        assert m[0] == "msg" and m[1] == {"setupComplete": {}}, (path, m)
        assert w.bye() is not None, path
    got = wait_sessions(si, len(paths))
    assert all(e["key"] in POOL_KEYS and e["model"] == FLASH and
               e["status"] == 101 for e in got), got
    # The API version is the client's.
    assert sorted(e["version"] for e in got) == sorted(v for _, v in paths), \
        got
    finish(d)


def test_live_handshake_answered_before_any_upstream():
    """The 101 is the proxy's own: it comes with the upstream unreachable,
    and only the setup finds out (a close, never a hang)."""
    si = StandIn()
    d = proxy_daemon(si, upstream="https://localhost:9")
    d.start()
    w = upgraded(d)
    assert w.accept_ok(), w.headers
    m = w.setup("models/" + FLASH)
    assert m[0] == "close" and m[1] in (1011, 1014), m
    no_full_keys(m[2])
    w.shut()
    finish(d)


def test_live_handshake_errors():
    """Wrong handshakes are HTTP answers in Gemini's error shape, before
    any upgrade: 405 for another method, 400 without Upgrade/Connection
    or with a bad key, 426 (+ Sec-WebSocket-Version: 13) for another
    version; other /ws/ paths are 404.  The stand-in sees none of them."""
    si, d = live_daemon()
    gemini_error(connect(d, method="POST"), 405)
    gemini_error(connect(d, headers={"Upgrade": None}), 400)
    gemini_error(connect(d, headers={"Connection": None}), 400)
    gemini_error(connect(d, headers={"Connection": "keep-alive"}), 400)
    gemini_error(connect(d, headers={"Sec-WebSocket-Key": "c2hvcnQ="}), 400)
    gemini_error(connect(d, headers={"Sec-WebSocket-Key": None}), 400)
    gemini_error(connect(d, headers={"Sec-WebSocket-Key": "!!not base64!!"}),
                 400)
    w = connect(d, headers={"Sec-WebSocket-Version": "8"})
    gemini_error(w, 426)
    assert w.headers.get("sec-websocket-version") == "13", w.headers
    for path in ("/ws/google.ai.generativelanguage.v1beta.GenerativeService."
                 "StreamGenerateContent",
                 "/ws/google.ai.generativelanguage.v2.GenerativeService."
                 "BidiGenerateContent",
                 "/ws/", "/ws/anything"):
        gemini_error(connect(d, path), 404)
    # The proxy still serves: a good session after all that.
    session(d).bye()
    got = wait_sessions(si, 1)
    assert len(si.log()) == 1 and len(got) == 1, si.log()
    finish(d)


# --------------------------------------------------------------------------
# credentials

def test_live_access_token_accepted_and_never_forwarded():
    """With access_tokens, the token as ?key=, x-goog-api-key or
    ?access_token= opens a session on a pool key; the token never reaches
    the stand-in."""
    si, d = live_daemon(access_tokens=[TOKEN])
    for path, kw in ((LIVE + "?key=" + TOKEN, {}),
                     (LIVE, {"key": TOKEN}),
                     (LIVE + "?access_token=" + TOKEN, {}),
                     (live_path("v1beta", constrained=True) +
                      "?access_token=" + TOKEN, {})):
        w = connect(d, path, **kw)
        assert w.status == 101, (path, w.status, w.body[:300])
        m = w.setup(FLASH)
        assert m[0] == "msg" and m[1] == {"setupComplete": {}}, (path, m)
        w.turn("hello")
        w.bye()
    got = wait_sessions(si, 4)
    for e in got:
        assert e["key"] in POOL_KEYS, e
        assert set(e["credentials"].values()) <= set(POOL_KEYS), e
        assert TOKEN not in json.dumps(e), e
    finish(d)
    assert TOKEN not in d.log()


def test_live_access_token_missing_or_wrong_is_401():
    si, d = live_daemon(access_tokens=[TOKEN])
    for path, kw in ((LIVE, {}),
                     (LIVE + "?key=not-the-token", {}),
                     (LIVE, {"key": "not-the-token"}),
                     (LIVE + "?access_token=not-the-token", {}),
                     (live_path("v1", slashes=2), {})):
        e = gemini_error(connect(d, path, **kw), 401)
        assert e["status"] == "UNAUTHENTICATED", e
    assert sessions(si) == [], si.log()
    finish(d)


def test_live_client_key_replaced_by_pool_key():
    """Without access_tokens, whatever key the client sends is replaced."""
    si, d = live_daemon()
    for path, kw in ((LIVE, {"key": CLIENT_KEY}),
                     (LIVE + "?key=" + CLIENT_KEY, {})):
        w = connect(d, path, **kw)
        assert w.status == 101, (w.status, w.body[:300])
        assert w.setup(FLASH)[0] == "msg"
        w.bye()
    got = wait_sessions(si, 2)
    for e in got:
        assert e["key"] in POOL_KEYS, e
        assert CLIENT_KEY not in json.dumps(e), e
        assert set(e["credentials"].values()) == {e["key"]}, e
    finish(d)


# --------------------------------------------------------------------------
# setup and the choice of a key

def test_live_first_message_must_be_setup():
    """A first message that is not setup: close 1007, no upstream session."""
    si, d = live_daemon()
    w = upgraded(d)
    w.send(live_turn("hello before setup"))
    c = w.closed()
    assert c is not None and c[0] == 1007, c
    w.shut()
    w = upgraded(d)
    w.send({"realtimeInput": {"text": "hi"}})
    c = w.closed()
    assert c is not None and c[0] == 1007, c
    w.shut()
    # A good session, logged; the refused ones never were.
    session(d, model="models/" + FLASH).bye()
    got = wait_sessions(si, 1)
    assert len(got) == 1 and got[0]["received"][0] == "setup", got
    finish(d)


def test_live_model_without_prefix():
    """setup.model as "x" as well as "models/x"; the session metered under
    the model's name."""
    si, d = live_daemon()
    w = session(d, model=PRO)
    w.turn("hello")
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["model"] == PRO, e
    wait_for(lambda: (counts_of(status_data(d), e["key"], PRO) or [0])[0]
             == 1, 3, "the session on %s metered" % PRO)
    finish(d)


def test_live_refused_setup_retried_on_next_key():
    """A 1011 quota close of the setup is retried on another key: the
    client sees one clean session."""
    si, d = live_daemon({"live": {"refuse_setups": 1, "refuse_code": 1011,
                                  "refuse_reason": QUOTA_REASON}})
    w = session(d)
    msgs = w.turn("Hello after a refusal.")
    assert turn_complete(msgs[-1]) and texts_of(msgs), msgs
    w.bye()
    got = wait_sessions(si, 2)
    assert len(got) == 2, got
    first, second = got
    assert first["key"] == K1 and first.get("refused") is True and \
        first["close_code"] == 1011, first
    assert second["key"] in (K2, K3) and second["turns"] == 1 and \
        second["close_code"] == 1000, second
    finish(d)


def test_live_refused_handshake_retried_on_next_key():
    """An HTTP answer to the upstream handshake (a 429 in Gemini's quota
    shape) cools that key and the next one opens the session; the client
    sees only its own 101 and a clean session."""
    si, d = live_daemon({"live": {"refuse_handshakes": 1}})
    w = session(d)
    msgs = w.turn("Hello after a refused handshake.")
    assert turn_complete(msgs[-1]) and texts_of(msgs), msgs
    w.bye()
    refused, opened = wait_sessions(si, 2)
    assert refused["key"] == K1 and refused.get("refused") and \
        refused["status"] == 429, refused
    assert opened["key"] in (K2, K3) and opened["status"] == 101 and \
        opened["turns"] == 1, opened
    c = cell(status_data(d), K1, FLASH)
    assert c["state"] == "cooling", c
    finish(d)


def test_live_invalid_key_rotated():
    """An invalid key (1007 "API key not valid") before setupComplete:
    the next key serves the session."""
    si, d = live_daemon(priority=[KINV, K1], secondary=[K3])
    w = session(d)
    msgs = w.turn("Hello past an invalid key.")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    got = wait_sessions(si, 2)
    assert [e["key"] for e in got] == [KINV, K1], got
    assert got[0]["close_code"] == 1007, got[0]
    # The invalid key is not tried again.
    session(d).bye()
    got = wait_sessions(si, 3)
    assert got[2]["key"] == K1, got
    finish(d)


def test_live_suspended_key_rotated():
    """A suspended key's 1008 close at setup (its reason echoes the full
    key, as Google's does) is a key fault too: the next key serves, and
    the client never sees that reason."""
    si, d = live_daemon(priority=[KSUS, K1], secondary=[K3])
    w = session(d)
    msgs = w.turn("Hello past a suspended key.")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    got = wait_sessions(si, 2)
    assert [e["key"] for e in got] == [KSUS, K1], got
    assert got[0]["close_code"] == 1008, got[0]
    finish(d, json.dumps(msgs))


def test_live_no_key_left_is_1011():
    """No key can serve the model (its rpd_limit spent): after the 101 and
    the setup, close 1011 RESOURCE_EXHAUSTED; the stand-in sees nothing."""
    models = {FLASH: {"tpm_limit": None, "tpd_limit": None,
                      "rpd_limit": 1}}
    si, d = live_daemon(priority=[K1], secondary=[], models=models)
    session(d).bye()
    wait_sessions(si, 1)
    w = upgraded(d)
    assert w.status == 101, (w.status, w.body[:300])
    m = w.setup(FLASH)
    assert m[0] == "close" and m[1] == 1011 and \
        m[2].startswith("RESOURCE_EXHAUSTED"), m
    assert len(m[2].encode()) <= 123, m
    w.shut()
    assert len(sessions(si)) == 1, sessions(si)
    finish(d, m[2])


def test_live_every_key_refused_by_upstream():
    """Every project out of quota upstream: each key refused with 1011, at
    most max_attempts of them tried, then the client gets 1011
    RESOURCE_EXHAUSTED."""
    si, d = live_daemon({"quotas": {FLASH: {"rpd": 0}}})
    w = upgraded(d)
    m = w.setup(FLASH)
    assert m[0] == "close" and m[1] == 1011 and \
        m[2].startswith("RESOURCE_EXHAUSTED"), m
    w.shut()
    got = wait_sessions(si, 3)
    assert sorted(e["key"] for e in got) == sorted(POOL_KEYS), got
    assert all(e["close_code"] == 1011 and e["quota"] == ["rpd"]
               for e in got), got
    no_full_keys(m[2])
    finish(d)


# --------------------------------------------------------------------------
# relaying

def test_live_text_turns():
    """Two text turns; the stand-in's binary frames come as binary frames."""
    si, d = live_daemon()
    w = session(d, systemInstruction={"parts": [{"text": "Be brief."}]},
                generationConfig={"responseModalities": ["TEXT"]})
    one = w.turn("Hello there, proxy.")
    two = w.turn("Again STANDIN:candidates=3 STANDIN:chunks=1")
    assert len(texts_of(one)) == 2 and texts_of(one)[0].startswith(
        "Stand-in answer"), one
    assert len(texts_of(two)) == 1, two
    u1, u2 = usage_of(one)[-1], usage_of(two)[-1]
    assert u1["responseTokenCount"] == 10 and u2["responseTokenCount"] == 3
    assert u2["promptTokenCount"] > u1["promptTokenCount"], (u1, u2)
    assert set(w.opcodes) == {OP_BIN}, w.opcodes
    assert not w.masked_seen
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["received"] == ["setup", "clientContent", "clientContent"], e
    assert e["turns"] == 2 and e["prompt"] == u1["promptTokenCount"] + \
        u2["promptTokenCount"], e
    finish(d)


def test_live_realtime_audio_chunks():
    """Binary realtimeInput audio chunks, then audioStreamEnd: answered,
    the audio counted upstream."""
    si, d = live_daemon()
    w = session(d, generationConfig={"responseModalities": ["AUDIO"]})
    chunk = b"\x00\x01" * 1600          # 0.1 s of 16 kHz PCM16
    for _ in range(10):
        w.send({"realtimeInput": {"audio": {
            "data": base64.b64encode(chunk).decode(),
            "mimeType": "audio/pcm;rate=16000"}}}, binary=True)
    w.send({"realtimeInput": {"audioStreamEnd": True}}, binary=True)
    msgs = w.until(turn_complete)
    assert turn_complete(msgs[-1]), msgs
    parts = [p for m in msgs if m[0] == "msg" for p in
             ((m[1].get("serverContent") or {}).get("modelTurn") or {})
             .get("parts", [])]
    assert parts and all(p["inlineData"]["mimeType"].startswith("audio/pcm")
                         for p in parts), parts
    u = usage_of(msgs)[-1]
    assert {"modality": "AUDIO", "tokenCount": 32} in \
        u["promptTokensDetails"], u
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["audio_bytes"] == 10 * len(chunk), e
    assert e["received"] == ["setup"] + ["realtimeInput"] * 11, e
    finish(d)


def test_live_tool_call_and_response():
    si, d = live_daemon()
    w = session(d, tools=TOOLS)
    w.send(live_turn("Please call get_weather for Paris."))
    m = w.recv()
    assert m[0] == "msg" and "toolCall" in m[1], m
    fc = m[1]["toolCall"]["functionCalls"][0]
    assert fc["name"] == "get_weather" and fc["id"], fc
    w.send({"toolResponse": {"functionResponses": [
        {"id": fc["id"], "name": "get_weather",
         "response": {"sky": "clear"}}]}})
    msgs = w.until(turn_complete)
    assert texts_of(msgs)[0].startswith("Function get_weather answered"), \
        msgs
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["received"] == ["setup", "clientContent", "toolResponse"], e
    assert e["sent"][:2] == ["setupComplete", "toolCall"], e
    finish(d)


def test_live_session_resumption_handle():
    """sessionResumptionUpdate.newHandle passes through; a new session
    resumes with it."""
    si, d = live_daemon()
    w = session(d, sessionResumption={})
    w.turn("Remember this.")
    upd = w.recv()
    assert upd[0] == "msg" and "sessionResumptionUpdate" in upd[1], upd
    handle = upd[1]["sessionResumptionUpdate"]["newHandle"]
    assert handle.startswith("standin-handle-"), upd
    w.bye()
    w = session(d, sessionResumption={"handle": handle})
    msgs = w.turn("Go on.")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    got = wait_sessions(si, 2)
    assert got[0]["handles"] == [handle] and got[1]["resumed"] is True, got
    finish(d)


def test_live_goaway_passes():
    si, d = live_daemon()
    w = session(d)
    msgs = w.turn("Soon gone STANDIN:goaway=1")
    assert msgs[0][0] == "msg" and msgs[0][1] == \
        {"goAway": {"timeLeft": "10s"}}, msgs
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    finish(d)


def test_live_server_close_code_passes():
    """The upstream's close code and reason reach the client."""
    si, d = live_daemon()
    w = session(d)
    w.send(live_turn("That is all. STANDIN:close=4001"))
    c = w.closed()
    assert c == (4001, "Closed by STANDIN:close=4001."), c
    w.shut()
    e = wait_sessions(si, 1)[0]
    assert e["close_code"] == 4001 and e["closed_by"] == "server", e
    finish(d)


def test_live_quota_close_mid_session_passes():
    """A quota close (1011) mid-session reaches the client with its
    reason, no key in it; the session stays metered on its key."""
    si, d = live_daemon()
    w = session(d)
    w.turn("first turn")
    w.send(live_turn("STANDIN:quota=tpm"))
    c = w.closed()
    assert c is not None and c[0] == 1011 and \
        c[1].startswith("RESOURCE_EXHAUSTED"), c
    no_full_keys(c[1])
    w.shut()
    e = wait_sessions(si, 1)[0]
    assert e["close_code"] == 1011 and e["quota"] == ["tpm"], e
    finish(d)


def test_live_client_close_code_passes():
    """The client's close code and reason reach the stand-in."""
    si, d = live_daemon()
    w = session(d)
    w.turn("hello")
    c = w.bye(4000, "bye")
    assert c is not None and c[0] == 4000, c
    e = wait_sessions(si, 1)[0]
    assert e["client_close"] == [4000, "bye"] and \
        e["closed_by"] == "client", e
    finish(d)


# --------------------------------------------------------------------------
# framing, through the proxy

def test_live_fragmented_setup_with_ping():
    """setup in three text frames with a ping between them: a pong, and
    the session."""
    si, d = live_daemon()
    w = upgraded(d)
    body = json.dumps({"setup": {"model": "models/" + FLASH}}).encode()
    w.send_bytes(body, fragments=3, ping=b"between")
    got = w.until(lambda m: m[0] == "msg")
    if ("pong", b"between", None) not in got:
        got.append(w.recv(5))       # the pong may follow setupComplete
    assert ("pong", b"between", None) in got, got
    assert ("msg", {"setupComplete": {}}, OP_BIN) in got, got
    msgs = w.turn("hello")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["model"] == FLASH and e["turns"] == 1, e
    finish(d)


def test_live_fragmented_client_content_with_ping():
    si, d = live_daemon()
    w = session(d)
    msgs = w.turn("A turn in three fragments, pinged between them.",
                  fragments=3, ping=b"frag")
    assert ("pong", b"frag", None) in msgs, msgs
    assert turn_complete(msgs[-1]) and len(texts_of(msgs)) == 2, msgs
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["received"] == ["setup", "clientContent"], e
    finish(d)


def test_live_one_megabyte_binary_frame():
    """A realtimeInput of ~1 MB in one binary frame gets through whole."""
    si, d = live_daemon()
    w = session(d)
    w.send({"realtimeInput": {"audio": {
        "data": base64.b64encode(AUDIO).decode(),
        "mimeType": "audio/pcm;rate=16000"}}}, binary=True)
    w.send({"realtimeInput": {"audioStreamEnd": True}}, binary=True)
    msgs = w.until(turn_complete)
    assert turn_complete(msgs[-1]), msgs
    u = usage_of(msgs)[-1]
    assert {"modality": "AUDIO", "tokenCount": 787} in \
        u["promptTokensDetails"], u
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["audio_bytes"] == len(AUDIO), e
    finish(d)


def test_live_ping_answered_by_proxy():
    si, d = live_daemon()
    w = session(d)
    w.ping(b"are you there")
    assert w.recv(5) == ("pong", b"are you there", None)
    w.ping(b"")
    assert w.recv(5) == ("pong", b"", None)
    msgs = w.turn("still here")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    finish(d)


def test_live_unmasked_client_frame_is_1002():
    """An unmasked client frame is a protocol error: close 1002 (as the
    first message, and mid-session, where the upstream session ends too)."""
    si, d = live_daemon()
    w = upgraded(d)
    w.frame(1, json.dumps({"setup": {"model": "models/" + FLASH}}).encode(),
            mask=False)
    c = w.closed(5)
    assert c is not None and c[0] == 1002, c
    w.shut()
    w = session(d)
    w.frame(1, json.dumps(live_turn("unmasked")).encode(), mask=False)
    c = w.closed(5)
    assert c is not None and c[0] == 1002, c
    w.shut()
    e = wait_sessions(si, 1)[0]
    assert e["received"] == ["setup"], e
    finish(d)


def test_live_invalid_utf8_is_1007():
    si, d = live_daemon()
    w = session(d)
    w.frame(1, b'{"clientContent": "\xff\xfe not utf-8"}')
    c = w.closed(5)
    assert c is not None and c[0] == 1007, c
    w.shut()
    e = wait_sessions(si, 1)[0]
    assert e["received"] == ["setup"], e
    finish(d)


# --------------------------------------------------------------------------
# metering

def test_live_usage_metered_per_key_and_model():
    """A session of two turns: one request, its prompt and total tokens
    (the sums of its usageMetadata) on the key the stand-in saw."""
    si, d = live_daemon()
    w = session(d)
    w.turn("First turn of a metered session.")
    w.turn("Second turn STANDIN:candidates=4")
    w.bye()
    e = wait_sessions(si, 1)[0]
    last = {}

    def settled():
        c = counts_of(status_data(d), e["key"], FLASH)
        last["c"] = c
        return c is not None and (c[0], c[1], c[3]) == \
            (1, e["prompt"], e["total"])
    try:
        wait_for(settled, 3, "the session's usage in status_data")
    except AssertionError:
        raise AssertionError("status_data %r, stand-in prompt %d total %d" %
                             (last.get("c"), e["prompt"], e["total"]))
    for k in POOL_KEYS:
        if k != e["key"]:
            c = counts_of(status_data(d), k, FLASH)
            assert c is None or c == (0, 0, 0, 0), (mask(k), c)
    finish(d)


def test_live_sessions_gauge_and_metric():
    """models[m].live_sessions and gemini_looper_live_sessions{model}: 1
    while a session is open, 0 after it closed."""
    si, d = live_daemon()
    w = session(d)
    wait_for(lambda: live_open(d) == 1, 3, "live_sessions 1")
    assert metric(d, "gemini_looper_live_sessions") == 1
    w.turn("hello")
    w.bye()
    wait_for(lambda: live_open(d) == 0, 3, "live_sessions 0")
    assert metric(d, "gemini_looper_live_sessions") == 0
    finish(d)


def test_live_sessions_limit_per_project():
    """sessions_limit 1 with K1 and K2 in one project, K3 in another:
    two sessions land on the two projects, a third is refused 1011
    RESOURCE_EXHAUSTED; once one closes, a new one is served."""
    models = {FLASH: {"tpm_limit": None, "tpd_limit": None,
                      "sessions_limit": 1}}
    si, d = live_daemon(priority=[{"key": K1, "project": "p"},
                                  {"key": K2, "project": "p"}],
                        secondary=[K3], models=models)
    proj = {K1: "p", K2: "p", K3: "p3"}
    w1 = session(d)
    w2 = session(d)
    w3 = upgraded(d)
    m = w3.setup(FLASH)
    assert m[0] == "close" and m[1] == 1011 and \
        m[2].startswith("RESOURCE_EXHAUSTED"), m
    w3.shut()
    wait_for(lambda: live_open(d) == 2, 3, "live_sessions 2")
    w1.bye()
    e1 = wait_sessions(si, 1)[0]
    wait_for(lambda: live_open(d) == 1, 3, "w1's place given back")
    w4 = session(d)
    assert turn_complete(w4.turn("a new session")[-1])
    w2.bye()
    e2 = wait_sessions(si, 2)[1]
    w4.bye()
    e4 = wait_sessions(si, 3)[2]
    assert {proj[e1["key"]], proj[e2["key"]]} == {"p", "p3"}, (e1, e2)
    assert proj[e4["key"]] == proj[e1["key"]], (e1, e4)
    assert not any(e.get("refused") for e in sessions(si)), sessions(si)
    finish(d)


# --------------------------------------------------------------------------
# processes and signals

def test_live_worker_killed():
    """kill -9 of the worker holding a session: the client's connection
    drops; new sessions and REST requests work; live_sessions back to 0;
    the finished turn's tokens stay counted."""
    si, d = live_daemon()
    w = session(d)
    msgs = w.turn("A turn before the crash.")
    u = usage_of(msgs)[-1]
    pid = live_worker(d)
    os.kill(pid, signal.SIGKILL)
    assert w.ended(5) in ("eof", "close"), "the client saw the drop"
    w.shut()
    wait_for(lambda: live_open(d) == 0, 5, "live_sessions 0 after the kill")
    e = wait_sessions(si, 1)[0]
    want = (u["promptTokenCount"], u["totalTokenCount"])
    last = {}

    def kept():
        c = last["c"] = counts_of(status_data(d), e["key"], FLASH)
        return c is not None and (c[1], c[3]) == want
    try:
        wait_for(kept, 3, "the finished turn's tokens")
    except AssertionError:
        raise AssertionError("status_data %r, the turn's %r" %
                             (last.get("c"), want))
    w = session(d)
    assert turn_complete(w.turn("after the crash")[-1])
    w.bye()
    st, _, raw = gen(d)
    assert st == 200, raw[:300]
    finish(d)


def test_live_sighup_keeps_session():
    """A reload during a session: the session goes on."""
    si, d = live_daemon()
    w = session(d)
    assert turn_complete(w.turn("before the reload")[-1])
    gen0 = status_data(d)["config_generation"]
    d.cfg["models"][PRO]["tpm_limit"] = 123456
    d.write_config()
    d.signal(signal.SIGHUP)
    wait_for(lambda: status_data(d)["config_generation"] > gen0, 10,
             "the reload")
    msgs = w.turn("after the reload")
    assert turn_complete(msgs[-1]) and len(texts_of(msgs)) == 2, msgs
    w.bye()
    e = wait_sessions(si, 1)[0]
    assert e["turns"] == 2 and e["closed_by"] == "client", e
    finish(d)


def test_live_sigterm_closes_1001():
    """SIGTERM with a session open: the client gets close 1001 within
    shutdown_timeout_s; the daemon exits 0."""
    si, d = live_daemon(shutdown_timeout_s=3)
    w = session(d)
    assert turn_complete(w.turn("before the stop")[-1])
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    c = w.closed(3 + 3)
    dt = time.monotonic() - t0
    assert c is not None and c[0] == 1001, c
    assert dt <= 3 + 2, dt
    w.shut()
    assert d.wait_exit(15) == 0
    e = wait_sessions(si, 1)[0]
    assert e["turns"] == 1, e
    finish(d)


def test_live_proxy_pings():
    """live.ping_s 1: the proxy pings; a client that answers them stays,
    even when it says nothing else for over three intervals."""
    si, d = live_daemon(live={"ping_s": 1})
    w = session(d)
    seen = pump(w, 3.5)
    assert w.pings >= 2, (w.pings, seen)
    assert all(m[0] != "close" for m in seen), seen
    msgs = w.turn("still here after the pings")
    assert turn_complete(msgs[-1]), msgs
    w.bye()
    finish(d)


def test_live_silent_client_dropped():
    """A client that stops reading and never answers a ping is dropped
    after about three ping intervals, and its upstream session closed."""
    si, d = live_daemon(live={"ping_s": 1})
    w = WSClient(d.port, LIVE, auto_pong=False)
    assert w.status == 101
    assert w.setup(FLASH)[0] == "msg"
    t0 = time.monotonic()
    wait_sessions(si, 1, timeout=3 * 1 + 5)
    dt = time.monotonic() - t0
    assert dt >= 1.0, "dropped before a ping was due (%.1f s)" % dt
    assert w.ended(5) in ("eof", "close")
    w.shut()
    wait_for(lambda: live_open(d) == 0, 3, "live_sessions 0")
    finish(d)


# --------------------------------------------------------------------------
# the official SDK through the proxy

def test_live_sdk_through_proxy():
    """@google/genai's ai.live.connect() with baseUrl = the proxy (the key
    an access token): text, tool call, resumption, as against the stand-in
    (test_live_standin.py), on pool keys."""
    if not _have_sdk():
        return
    si, d = live_daemon(access_tokens=[TOKEN])
    e = dict(os.environ)
    e.update({"BASE": "http://127.0.0.1:%d" % d.port, "KEY": TOKEN,
              "MODEL": FLASH, "CASES": json.dumps(["text", "tool", "resume"]),
              "NODE_EXTRA_CA_CERTS": ca_file()})
    r = subprocess.run(["node", os.path.join(SDK, "live.mjs")], env=e,
                       capture_output=True, text=True, timeout=90, cwd=SDK)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    t = out["text"]
    assert t.get("connected") and not t.get("error") and \
        not t.get("timeout"), t
    assert t["messages"][0] == ["setupComplete"], t["messages"]
    assert len(t["texts"]) == 2 and \
        t["texts"][0].startswith("Stand-in answer"), t
    u = t["usage"][-1]
    assert u["totalTokenCount"] == u["promptTokenCount"] + \
        u["responseTokenCount"], u
    tool = out["tool"]
    fc = tool["toolCall"]["functionCalls"][0]
    assert fc["name"] == "get_weather" and fc["id"], tool
    assert tool["texts"][0].startswith("Function get_weather answered"), tool
    assert not tool.get("error") and not tool.get("timeout"), tool
    first, second = out["resume"]["first"], out["resume"]["second"]
    assert first.get("handle", "").startswith("standin-handle-"), first
    assert second.get("connected") and len(second["texts"]) == 2, second
    got = wait_sessions(si, 4)
    assert len(got) == 4, got
    assert all(x["key"] in POOL_KEYS and x["model"] == FLASH and
               TOKEN not in json.dumps(x) for x in got), got
    assert [x["resumed"] for x in got] == [None, None, None, True], got
    assert all(x["closed_by"] == "client" for x in got), got
    finish(d)
