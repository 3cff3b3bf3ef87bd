"""@google/genai's ai.live.connect() straight against the stand-in's Live
endpoint (no daemon): the stand-in's wire format is what the real SDK
accepts.  Issue 13 builds the proxy's Live relay on this stand-in, so its
handshake, framing and messages are checked here against the SDK itself
(tests/sdk/live.mjs, @google/genai pinned in tests/sdk's lockfile).
"""
import json
import os
import shutil
import subprocess

from standin import FLASH, K1, K3, KINV, StandIn, ca_file

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(HERE), "sdk")


def _have_sdk():
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(SDK, "node_modules", "@google", "genai")):
        print("    skipped: node or tests/sdk/node_modules missing")
        return False
    return True


def _live(si, cases, key=K1, model=FLASH):
    e = dict(os.environ)
    e.update({"BASE": si.url, "KEY": key, "MODEL": model,
              "CASES": json.dumps(cases), "NODE_EXTRA_CA_CERTS": ca_file()})
    r = subprocess.run(["node", os.path.join(SDK, "live.mjs")], env=e,
                       capture_output=True, text=True, timeout=90, cwd=SDK)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _sessions(si, since=0):
    return [e for e in si.log(since) if e.get("kind") == "live"]


def test_live_sdk_text_tool_resume_direct():
    if not _have_sdk():
        return
    si = StandIn()
    out = _live(si, ["text", "tool", "resume"])
    t = out["text"]
    assert t.get("connected") and not t.get("error") and not t.get("timeout"), t
    assert t["messages"][0] == ["setupComplete"], t["messages"]
    assert len(t["texts"]) == 2 and t["texts"][0].startswith("Stand-in answer"), t
    u = t["usage"][-1]
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["responseTokenCount"], u
    assert u["responseTokensDetails"] == [{"modality": "TEXT", "tokenCount": 10}], u
    assert t["messages"][-1] == ["serverContent", "usageMetadata"], t["messages"]

    tool = out["tool"]
    fc = tool["toolCall"]["functionCalls"][0]
    assert fc["name"] == "get_weather" and fc["id"], tool
    assert tool["texts"][0].startswith("Function get_weather answered"), tool
    assert not tool.get("error") and not tool.get("timeout"), tool

    first, second = out["resume"]["first"], out["resume"]["second"]
    assert first.get("handle", "").startswith("standin-handle-"), first
    assert second.get("connected") and len(second["texts"]) == 2, second

    log = _sessions(si)
    assert len(log) == 4, log
    assert all(e["key"] == K1 and e["project"] == "p1" and e["model"] == FLASH
               and e["status"] == 101 and e["key_source"] == "query"
               for e in log), log
    # @google/genai 2.x joins "https://host:port/" and "/ws/...".
    assert all(e["path"].startswith("//ws/google.ai.generativelanguage.v1beta.")
               for e in log), [e["path"] for e in log]
    by = {tuple(e["received"]): e for e in log}
    assert ("setup", "clientContent", "toolResponse") in by, list(by)
    tl = by[("setup", "clientContent", "toolResponse")]
    assert tl["sent"][:2] == ["setupComplete", "toolCall"], tl
    assert tl["total"] == tool["usage"][0]["totalTokenCount"] + \
        tool["usage"][1]["totalTokenCount"], (tl, tool["usage"])
    assert [e["resumed"] for e in log] == [None, None, None, True], log
    # The SDK's session.close() sends a close frame without a code; the
    # stand-in saw the client end every session.
    assert all(e["closed_by"] == "client" for e in log), log


def test_live_sdk_refusals_direct():
    """What the SDK shows for the closes a proxy must retry before the
    client sees them: an invalid key, a refused setup, a spent quota."""
    if not _have_sdk():
        return
    si = StandIn({"quotas": {"live-spent": {"rpd": 0}}})
    bad = _live(si, ["refused"], key=KINV)["refused"]
    assert bad["close"]["code"] == 1007 and "API key not valid" in \
        bad["close"]["reason"], bad
    si.config({"live": {"refuse_setups": 1, "refuse_code": 1011,
                        "refuse_reason": "Internal error encountered."}})
    ref = _live(si, ["refused"], key=K3)["refused"]
    assert ref["close"] == {"code": 1011,
                            "reason": "Internal error encountered."}, ref
    spent = _live(si, ["refused"], key=K3, model="live-spent")["refused"]
    assert spent["close"]["code"] == 1011 and \
        spent["close"]["reason"].startswith("RESOURCE_EXHAUSTED"), spent
    log = _sessions(si)
    assert [(e["close_code"], e["closed_by"]) for e in log] == \
        [(1007, "server"), (1011, "server"), (1011, "server")], log
    assert log[2]["quota"] == ["rpd"] and log[1].get("refused") is True, log
