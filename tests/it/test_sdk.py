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
