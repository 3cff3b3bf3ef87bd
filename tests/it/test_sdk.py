"""The official SDKs against the proxy, as users point them at it
(tests/sdk: @google/genai and the OpenAI SDK, pinned in its lockfile).

Issue 10 §2: with every key of the pool spent for the day, the calls that
cost no quota (models list and get, file upload and list, countTokens,
OpenAI's models list) still work through the SDKs; generation is refused
with 429.
"""
import json
import os
import shutil
import subprocess

from standin import FLASH, K1, K2, K3, StandIn, proxy_daemon
from test_proxy import cell, finish, gen, status_data

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(HERE), "sdk")


def _node(script, env):
    e = dict(os.environ)
    e.update(env)
    r = subprocess.run(["node", os.path.join(SDK, script)], env=e,
                       capture_output=True, text=True, timeout=90, cwd=SDK)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_sdk_quota_free_calls_with_every_key_spent():
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(SDK, "node_modules", "@google", "genai")):
        print("    skipped: node or tests/sdk/node_modules missing")
        return
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    st, _, raw = gen(d, FLASH, "spend it STANDIN:quota=rpd")
    assert st == 429, (st, raw[:300])
    sd = status_data(d)
    assert all(cell(sd, k, FLASH)["state"] == "exhausted"
               for k in (K1, K2, K3))
    out = _node("quota_free.mjs", {"PROXY": "http://127.0.0.1:%d" % d.port,
                                   "MODEL": FLASH})
    for name in ("models.list", "models.get", "files.upload", "files.list",
                 "countTokens", "openai.models.list"):
        assert "ok" in out[name], (name, out[name])
    assert "models/" + FLASH in out["models.list"]["ok"], out["models.list"]
    assert out["files.upload"]["ok"] in out["files.list"]["ok"], out
    assert FLASH in " ".join(out["openai.models.list"]["ok"]), out
    # Generation itself is refused, with Gemini's error shape.
    assert "error" in out["generateContent"], out
    assert "429" in out["generateContent"]["error"] or \
        out["generateContent"].get("status") == 429, out["generateContent"]
    finish(d, json.dumps(out))


def test_sdk_broken_stream_is_incomplete():
    """Issue 12 section 5: a stream the upstream breaks off (after a whole
    first event: a clean end there would look like a short answer) ends
    with an error in @google/genai, never as a clean end; a whole stream
    ends clean.  The same for a non-stream answer cut short."""
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(SDK, "node_modules", "@google", "genai")):
        print("    skipped: node or tests/sdk/node_modules missing")
        return
    si = StandIn()
    d = proxy_daemon(si, workers=2, upstream_timeout_s=2)
    d.start()
    cases = {
        "whole": {"prompt": "all of it STANDIN:chunks=4", "stream": True},
        "reset": {"prompt": "STANDIN:fault=reset_midstream STANDIN:chunks=4",
                  "stream": True},
        "close": {"prompt": "STANDIN:fault=close_midstream STANDIN:chunks=4",
                  "stream": True},
        "stall": {"prompt": "STANDIN:fault=stall_midstream STANDIN:chunks=4",
                  "stream": True},
        "cut_chunk": {"prompt": "STANDIN:fault=cut_chunk STANDIN:chunks=4",
                      "stream": True},
        "bad_chunk": {"prompt": "STANDIN:fault=bad_chunk STANDIN:chunks=4",
                      "stream": True},
        "generate_close": {"prompt": "STANDIN:fault=close_midstream",
                           "stream": False},
        "generate_chunked_cut": {
            "prompt": "STANDIN:fault=cut_chunk STANDIN:framing=chunked",
            "stream": False},
    }
    out = _node("broken_stream.mjs", {
        "PROXY": "http://127.0.0.1:%d" % d.port, "MODEL": FLASH,
        "CASES": json.dumps(cases)})
    assert out["whole"]["end"] == "clean" and out["whole"]["chunks"] == 4, \
        out["whole"]
    for name in cases:
        if name == "whole":
            continue
        assert out[name]["end"] == "error", (name, out[name])
        if cases[name]["stream"]:
            # The first event came through before the cut.
            assert out[name]["chunks"] == 1, (name, out[name])
    for name in cases:
        print("    %s: %d chunk(s), %s %s" % (name, out[name]["chunks"],
              out[name]["end"], out[name].get("error", "")[:100]))
    # Each cut went upstream once (no retry after bytes went out).
    log = si.log()
    assert len(log) == len(cases), [(e["key"], e.get("fault")) for e in log]
    finish(d, json.dumps(out))
