"""Issue 5: /api/status_data, /metrics and /status against a real daemon
whose upstream is the stand-in Gemini server.

- the schema of /api/status_data: every contract field and every field
  issue 5 adds, with its type, after real traffic (served, cached, cooling,
  exhausted), and the numbers checked against what the stand-in served;
- the daemon's facts: uptime, version, generation and the last reload's
  result after a good and a bad SIGHUP;
- /metrics: `promtool check metrics` (Debian's prometheus package) on a
  real scrape, a strict parser of our own on the same text, and counters
  that move with traffic (429s by quota class, answers, tokens, retries,
  the duration histogram);
- admin_token: /status, /api/status_data and /metrics need it when set;
- /status is the embedded page and loads nothing from elsewhere.
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess

import lib
from lib import wait_for
from standin import (FLASH, PRO, K1, K2, K3, ALL_KEYS, StandIn,
                     proxy_daemon, mask)

LITE = "gemini-2.5-flash-lite"     # not in the config: default's limits
JSON = {"Content-Type": "application/json"}
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
LOCAL = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
HEX8 = re.compile(r"[0-9a-f]{8}")
STATES = {"available", "cooling", "exhausted"}
REASONS = {None, "tpm", "rpm", "tpd", "rpd", "429", "invalid"}
KINDS = ("prompt", "candidates", "cached", "thoughts", "total")
GEN_KINDS = ("generate", "stream", "openai_chat")

# --------------------------------------------------------------------------
# helpers


def gen(d, model, text, timeout=20):
    body = json.dumps({"contents": [{"role": "user",
                                     "parts": [{"text": text}]}]}).encode()
    return d.request("POST", "/v1beta/models/%s:generateContent" % model,
                     body, JSON, timeout=timeout)


def get_json(d, path, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    st, hd, raw = d.request("GET", path, headers=h)
    assert st == 200, (path, st, raw[:300])
    return json.loads(raw)


def by_masked(sd, key):
    found = [k for k in sd["keys"] if k["masked"] == mask(key)]
    assert len(found) == 1, (mask(key), found)
    return found[0]


def no_full_keys(*texts):
    for t in texts:
        if isinstance(t, (bytes, bytearray)):
            t = bytes(t).decode("utf-8", "replace")
        for k in ALL_KEYS + lib.KEYS:
            assert k not in t, "full key %s in output" % mask(k)


def served(entries):
    """(key, model) -> per-kind sums and request count of the successful
    generation requests in stand-in log entries."""
    out = {}
    for e in entries:
        if e["status"] == 200 and e.get("kind") in GEN_KINDS:
            r = out.setdefault((e["key"], e["model"]),
                               dict.fromkeys(KINDS + ("requests",), 0))
            r["requests"] += 1
            for k in KINDS:
                r[k] += e.get(k) or 0
    return out


# A small schema language: a type, a tuple of alternatives, "iso" (an ISO
# 8601 UTC time), a dict (exactly these fields at least), [spec] (a list
# of spec), {"*": spec} (a map of any names to spec).
NUM = "num"
UINT = "uint"


def check(v, spec, path="$"):
    if isinstance(spec, tuple):
        errs = []
        for s in spec:
            try:
                check(v, s, path)
                return
            except AssertionError as e:
                errs.append(str(e))
        raise AssertionError("%s: none of %r: %s" % (path, spec, errs))
    if spec is None:
        assert v is None, "%s: %r is not null" % (path, v)
    elif spec == "iso":
        assert isinstance(v, str) and ISO_Z.fullmatch(v), \
            "%s: %r is not an ISO 8601 UTC time" % (path, v)
    elif spec == "local":
        assert isinstance(v, str) and LOCAL.fullmatch(v), \
            "%s: %r is not YYYY-MM-DD HH:MM" % (path, v)
    elif spec == UINT:
        assert isinstance(v, int) and not isinstance(v, bool) and v >= 0, \
            "%s: %r is not a count" % (path, v)
    elif spec == NUM:
        assert isinstance(v, (int, float)) and not isinstance(v, bool), \
            "%s: %r is not a number" % (path, v)
    elif spec is bool:
        assert isinstance(v, bool), "%s: %r is not a boolean" % (path, v)
    elif spec is str:
        assert isinstance(v, str), "%s: %r is not a string" % (path, v)
    elif isinstance(spec, list):
        assert isinstance(v, list), "%s: not a list" % path
        for i, x in enumerate(v):
            check(x, spec[0], "%s[%d]" % (path, i))
    elif isinstance(spec, dict) and list(spec) == ["*"]:
        assert isinstance(v, dict), "%s: not an object" % path
        for k, x in v.items():
            check(x, spec["*"], "%s.%s" % (path, k))
    elif isinstance(spec, dict):
        assert isinstance(v, dict), "%s: not an object" % path
        for k, s in spec.items():
            assert k in v, "%s: no field %r (has %s)" % (path, k, sorted(v))
            check(v[k], s, "%s.%s" % (path, k))
    else:
        raise AssertionError("bad spec %r" % (spec,))


LIMIT = (UINT, None)
TOKENS = {k: UINT for k in KINDS}
CELL = {
    "state": str,
    "reason": (str, None),
    "tpm_used": UINT, "tpd_used": UINT, "rpm_used": UINT, "rpd_used": UINT,
    "tpm_limit": LIMIT, "tpd_limit": LIMIT, "rpm_limit": LIMIT,
    "rpd_limit": LIMIT,
    "requests_today": UINT, "errors_today": UINT,
    "tokens_today": TOKENS,
    "cache_hit_ratio": NUM,
    "cooldown_until": ("iso", None),
    "until": ("iso", None),
}
SCHEMA = {
    # the contract's
    "now": "iso",
    "next_quota_reset": "local",
    "current_keys": {"*": (str, None)},
    "models": {"*": {
        "tpm_limit": LIMIT, "tpd_limit": LIMIT,
        "rpm_limit": LIMIT, "rpd_limit": LIMIT,
        "configured": bool, "default": bool,
        "requests_today": UINT, "errors_today": UINT,
        "tokens_today": TOKENS, "cache_hit_ratio": NUM,
        "keys": {"available": UINT, "cooling": UINT, "exhausted": UINT,
                 "invalid": UINT},
        # the Live API's
        "live_sessions": UINT, "sessions_limit": LIMIT,
    }},
    "keys": [{
        "id": str, "masked": str, "tier": str, "state": str,
        "until": ("iso", None), "invalid_reason": (str, None),
        "models": {"*": CELL},
    }],
    "history": [{"minute": "iso", "tokens": UINT}],
    # issue 5's
    "next_quota_reset_utc": "iso",
    "timezone": str,
    "version": str,
    "uptime_s": UINT,
    "config_generation": UINT,
    "last_reload": {"time": ("iso", None), "ok": bool, "message": str},
    "last_reset": ("iso", None),
    "tokens_today": TOKENS,
    "requests_today": UINT,
    "cache_hit_ratio": NUM,
    "history_by_model": {"*": [UINT]},
    "history_by_key": {"*": [UINT]},
    "workers": [{"pid": UINT, "state": str, "requests": UINT,
                 "request": str, "busy_ms": UINT}],
    "workers_busy": UINT,
    "workers_idle": UINT,
}


def ratio(cached, prompt):
    return 0 if not prompt or not cached else \
        math.floor(cached / prompt * 10000 + 0.5) / 10000


def iso_ms(s):
    import datetime
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


def busy_traffic(d, si):
    """Traffic that leaves every kind of state behind:
    flash on K1 with candidates, thoughts and an implicit-cache hit;
    pro: K1's project allows 2 a minute, so the third goes to K2 and K1
    cools (reason rpm); flash-lite (not in the config): a per-day 429 on
    every key, so all three are exhausted and no key can serve it."""
    prefix = "The same long preamble. " * 50       # 1200 bytes
    for text in ("hello STANDIN:candidates=7",
                 "thinking STANDIN:thoughts=5 STANDIN:candidates=3",
                 prefix + "first question",
                 prefix + "second question"):
        st, _, raw = gen(d, FLASH, text)
        assert st == 200, raw[:300]
    for i in range(3):
        st, _, raw = gen(d, PRO, "pro %d" % i)
        assert st == 200, raw[:300]
    st, _, raw = gen(d, LITE, "spent STANDIN:quota=rpd")
    assert st == 429, (st, raw[:300])


def busy_daemon(**over):
    si = StandIn({"projects": {"p1": {"quotas": {PRO: {"rpm": 2}}}}})
    models = {
        FLASH: {"tpm_limit": 250000, "tpd_limit": 6000000,
                "rpm_limit": 100, "rpd_limit": 5000},
        PRO: {"tpm_limit": 125000, "tpd_limit": None},
    }
    d = proxy_daemon(si, models=models, **over)
    d.start()
    return si, d


# --------------------------------------------------------------------------
# /api/status_data


def test_status_data_schema_after_traffic():
    si, d = busy_daemon()
    busy_traffic(d, si)
    want = served(si.log())
    # The implicit cache did hit, and the thoughts were counted.
    assert want[(K1, FLASH)]["cached"] > 0, want
    assert want[(K1, FLASH)]["thoughts"] == 5, want

    def settled():
        sd = get_json(d, "/api/status_data")
        c = by_masked(sd, K1)["models"][FLASH]
        return sd if c["requests_today"] == 4 else None
    sd = wait_for(settled, 2, "flash's 4 requests in status_data")
    raw = json.dumps(sd, ensure_ascii=False)
    check(sd, SCHEMA)
    no_full_keys(raw)

    assert set(sd["models"]) == {FLASH, PRO, LITE}
    assert sd["models"][LITE]["configured"] is False
    assert sd["models"][FLASH]["default"] is True
    assert sd["models"][FLASH]["rpm_limit"] == 100
    assert sd["models"][FLASH]["rpd_limit"] == 5000
    assert sd["models"][PRO]["tpd_limit"] is None
    assert sd["timezone"] == "UTC"
    v = d.run("-V").stdout.split()
    assert sd["version"] == v[-1], (sd["version"], v)
    assert sd["config_generation"] >= 1
    assert sd["last_reload"] == {"time": None, "ok": True, "message": ""}
    assert iso_ms(sd["next_quota_reset_utc"]) > iso_ms(sd["now"])
    assert sd["next_quota_reset_utc"][:16].replace("T", " ") == \
        sd["next_quota_reset"]          # timezone UTC

    # Keys: three, in config order, fingerprints and masks.
    assert [k["masked"] for k in sd["keys"]] == [mask(K1), mask(K2),
                                                  mask(K3)]
    assert [k["tier"] for k in sd["keys"]] == ["priority", "priority",
                                                "secondary"]
    for k in sd["keys"]:
        assert HEX8.fullmatch(k["id"]), k["id"]
        assert set(k["models"]) == {FLASH, PRO, LITE}
        for m, c in k["models"].items():
            assert c["state"] in STATES and c["reason"] in REASONS, c
            lim = sd["models"][m]
            for f in ("tpm_limit", "tpd_limit", "rpm_limit", "rpd_limit"):
                assert c[f] == lim[f], (m, f, c[f], lim[f])
            w = want.get((next(x for x in ALL_KEYS
                               if mask(x) == k["masked"]), m))
            w = w or dict.fromkeys(KINDS + ("requests",), 0)
            assert c["requests_today"] == w["requests"], (k["masked"], m, c)
            for kind in KINDS:
                assert c["tokens_today"][kind] == w[kind], \
                    (k["masked"], m, kind, c, w)
            assert c["tpd_used"] == w["prompt"], (k["masked"], m, c)
            assert c["tpm_used"] == w["prompt"], (k["masked"], m, c)
            assert c["rpm_used"] == w["requests"] == c["rpd_used"], c
            assert c["cache_hit_ratio"] == ratio(w["cached"], w["prompt"])
            if c["state"] == "available":
                assert c["reason"] is None and c["until"] is None, c
                assert c["cooldown_until"] is None
            elif c["state"] == "cooling":
                assert c["until"] == c["cooldown_until"], c
                assert iso_ms(c["until"]) > iso_ms(sd["now"]) - 1000
            else:
                assert c["until"] == sd["next_quota_reset_utc"], c
                assert c["cooldown_until"] is None

    # pro: K1 is cooling on its per-minute requests, K2 serves.
    k1 = by_masked(sd, K1)
    assert k1["models"][PRO]["state"] == "cooling", k1["models"][PRO]
    assert k1["models"][PRO]["reason"] == "rpm", k1["models"][PRO]
    assert sd["current_keys"][PRO] == by_masked(sd, K2)["id"]
    assert sd["current_keys"][FLASH] == k1["id"]
    # flash-lite: every key spent for the day, no key can serve it.
    assert sd["current_keys"][LITE] is None
    for k in sd["keys"]:
        c = k["models"][LITE]
        assert c["state"] == "exhausted" and c["reason"] in ("rpd", "tpd",
                                                             "429"), c
        # The key's own state: the most restrictive of its models', until
        # the latest end among those.
        assert k["state"] == "exhausted", k
        assert k["until"] == sd["next_quota_reset_utc"], k
        assert k["invalid_reason"] is None

    # The models' sums and key counts.
    for m, lim in sd["models"].items():
        cells = [k["models"][m] for k in sd["keys"]]
        assert lim["requests_today"] == sum(c["requests_today"]
                                            for c in cells)
        assert lim["errors_today"] == sum(c["errors_today"] for c in cells)
        for kind in KINDS:
            assert lim["tokens_today"][kind] == sum(
                c["tokens_today"][kind] for c in cells), (m, kind)
        assert lim["cache_hit_ratio"] == ratio(lim["tokens_today"]["cached"],
                                               lim["tokens_today"]["prompt"])
        for s in STATES:
            assert lim["keys"][s] == sum(c["state"] == s for c in cells)
        assert lim["keys"]["invalid"] == 0
    assert sd["models"][PRO]["keys"] == {"available": 2, "cooling": 1,
                                         "exhausted": 0, "invalid": 0}
    assert sd["models"][LITE]["keys"]["exhausted"] == 3
    for kind in KINDS:
        assert sd["tokens_today"][kind] == sum(
            m["tokens_today"][kind] for m in sd["models"].values())
    assert sd["requests_today"] == 7
    assert 0 < sd["cache_hit_ratio"] < 1
    assert sd["cache_hit_ratio"] == ratio(sd["tokens_today"]["cached"],
                                          sd["tokens_today"]["prompt"])

    # History: 60 minutes, per model and per key, summing to what was
    # served (all of it within the hour).
    assert len(sd["history"]) == 60
    for m in sd["models"]:
        h = sd["history_by_model"][m]
        assert len(h) == 60
        assert sum(h) == sd["models"][m]["tokens_today"]["total"], m
    assert [e["tokens"] for e in sd["history"]] == [
        sum(col) for col in zip(*sd["history_by_model"].values())]
    assert set(sd["history_by_key"]) == {k["id"] for k in sd["keys"]}
    for k in sd["keys"]:
        h = sd["history_by_key"][k["id"]]
        assert len(h) == 60
        assert sum(h) == sum(c["tokens_today"]["total"]
                             for c in k["models"].values())

    # The scoreboard: this very request is being written by one of them.
    assert sd["workers_busy"] >= 1
    assert sd["workers_busy"] + sd["workers_idle"] <= len(sd["workers"])
    pids = set(d.workers())
    assert {w["pid"] for w in sd["workers"]} <= pids | {0}
    assert any(w["request"].startswith("GET /api/status_data")
               for w in sd["workers"]), sd["workers"]
    no_full_keys(d.log())


def test_status_data_reload_result():
    si, d = busy_daemon()
    sd = get_json(d, "/api/status_data")
    gen0 = sd["config_generation"]
    assert sd["last_reload"]["time"] is None
    # A good reload: a new generation, ok, a time.
    d.cfg["models"][PRO]["tpm_limit"] = 99000
    d.write_config()
    d.signal(signal.SIGHUP)
    sd = wait_for(lambda: (lambda s: s if s["config_generation"] > gen0 and
                           s["last_reload"]["time"] else None)(
                               get_json(d, "/api/status_data")),
                  10, "a new generation and its reload's result")
    assert sd["last_reload"]["ok"] is True
    assert ISO_Z.fullmatch(sd["last_reload"]["time"])
    assert abs(iso_ms(sd["last_reload"]["time"]) - iso_ms(sd["now"])) < 15000
    assert sd["models"][PRO]["tpm_limit"] == 99000
    gen1 = sd["config_generation"]
    # A bad one: the old config stays, the result says why.
    d.write_config(raw="{ not json")
    d.signal(signal.SIGHUP)
    sd = wait_for(lambda: (lambda s: s if not s["last_reload"]["ok"]
                           else None)(get_json(d, "/api/status_data")),
                  10, "the failed reload")
    assert sd["config_generation"] == gen1
    assert sd["last_reload"]["message"], sd["last_reload"]
    assert sd["models"][PRO]["tpm_limit"] == 99000
    st, _, raw = d.request("GET", "/metrics")
    assert "\ngemini_looper_last_reload_success 0\n" in raw.decode()


# --------------------------------------------------------------------------
# /metrics

SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_metrics(text):
    """A strict reader of the text format 0.0.4: HELP then TYPE before a
    family's samples, each family once, its samples together, well-formed
    names, labels and values, no sample twice, histogram buckets
    cumulative with +Inf equal to _count.  Returns
    {family: {"type": t, "samples": {(name, ((label, value), ...)): v}}}."""
    fams = {}
    cur = None
    assert text.endswith("\n"), "no final newline"
    for line in text.split("\n")[:-1]:
        assert line, "empty line"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in fams, "family %s twice" % name
            assert help_, "empty HELP for %s" % name
            cur = fams[name] = {"type": None, "samples": {}}
            curname = name
            continue
        if line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            assert cur is not None and name == curname, \
                "TYPE %s without its HELP" % name
            assert t in ("counter", "gauge", "histogram"), t
            assert cur["type"] is None and not cur["samples"]
            cur["type"] = t
            if t == "counter":
                assert name.endswith("_total"), name
            continue
        assert not line.startswith("#"), "stray comment %r" % line
        m = SAMPLE.fullmatch(line)
        assert m, "bad sample line %r" % line
        name, labels, value = m.group(1), m.group(3), m.group(4)
        assert cur is not None and cur["type"], "sample before TYPE"
        if cur["type"] == "histogram":
            assert name in (curname + "_bucket", curname + "_sum",
                            curname + "_count"), (name, curname)
        else:
            assert name == curname, (name, curname)
        lab = []
        if labels is not None:
            pos = 0
            while pos < len(labels):
                lm = LABEL.match(labels, pos)
                assert lm, "bad labels in %r" % line
                lab.append((lm.group(1), lm.group(2)))
                pos = lm.end()
                if pos < len(labels):
                    assert labels[pos] == ",", "bad labels in %r" % line
                    pos += 1
            assert len({k for k, _ in lab}) == len(lab), line
        v = float(value)
        key = (name, tuple(lab))
        assert key not in cur["samples"], "sample twice: %r" % line
        cur["samples"][key] = v
    for name, f in fams.items():
        assert f["type"], "family %s without TYPE" % name
        if f["type"] == "counter":
            assert all(v >= 0 for v in f["samples"].values()), name
        if f["type"] != "histogram":
            continue
        series = {}
        for (n, lab), v in f["samples"].items():
            rest = tuple(x for x in lab if x[0] != "le")
            s = series.setdefault(rest, {"buckets": []})
            if n.endswith("_bucket"):
                le = dict(lab)["le"]
                s["buckets"].append((float(le), v))
            else:
                s[n.rsplit("_", 1)[1]] = v
        for rest, s in series.items():
            b = s["buckets"]
            assert b and b[-1][0] == float("inf"), (name, rest)
            assert [x for x, _ in b] == sorted(x for x, _ in b), (name, rest)
            assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), \
                ("buckets not cumulative", name, rest, b)
            assert b[-1][1] == s["count"], (name, rest)
            assert s["sum"] >= 0
    return fams


def val(fams, fam, name=None, **labels):
    f = fams[fam]["samples"]
    want = tuple(sorted(labels.items()))
    for (n, lab), v in f.items():
        if n == (name or fam) and tuple(sorted(lab)) == want:
            return v
    return None


def promtool(text):
    """`promtool check metrics` on text: (exit code, output)."""
    tool = shutil.which("promtool")
    assert tool, "promtool missing: make deps installs Debian's prometheus"
    r = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def scrape(d, **kw):
    st, h, raw = d.request("GET", "/metrics", **kw)
    assert st == 200, (st, raw[:300])
    ct = {k.lower(): v for k, v in h.items()}["content-type"]
    assert ct.startswith("text/plain; version=0.0.4"), ct
    text = raw.decode("utf-8")
    no_full_keys(text)
    return text


def test_metrics_promtool_and_counters():
    si, d = busy_daemon()
    before = parse_metrics(scrape(d))
    rc, out = promtool(scrape(d))
    assert rc == 0 and not out.strip(), out
    assert val(before, "gemini_looper_up") == 1
    assert val(before, "gemini_looper_requests_total", model=FLASH,
               **{"class": "2xx"}) == 0
    assert not before["gemini_looper_upstream_429_total"]["samples"]

    busy_traffic(d, si)
    # One more: a forced per-minute 429 on K1 for flash; the proxy rotates.
    st, _, raw = gen(d, FLASH, "rotate STANDIN:quota=rpm")
    text = scrape(d)
    rc, out = promtool(text)
    assert rc == 0 and not out.strip(), out
    fams = parse_metrics(text)
    sd = get_json(d, "/api/status_data")
    ids = {k["masked"]: k["id"] for k in sd["keys"]}
    i1, i2, i3 = ids[mask(K1)], ids[mask(K2)], ids[mask(K3)]
    log = si.log()

    # Every family the issue names, with its type.
    types = {n: f["type"] for n, f in fams.items()}
    for n, t in {
            "gemini_looper_requests_total": "counter",
            "gemini_looper_upstream_requests_total": "counter",
            "gemini_looper_upstream_429_total": "counter",
            "gemini_looper_tokens_total": "counter",
            "gemini_looper_retries_total": "counter",
            "gemini_looper_waits_total": "counter",
            "gemini_looper_tpm_used": "gauge",
            "gemini_looper_tpm_limit": "gauge",
            "gemini_looper_key_state": "gauge",
            "gemini_looper_keys": "gauge",
            "gemini_looper_workers": "gauge",
            "gemini_looper_request_duration_seconds": "histogram",
            "gemini_looper_build_info": "gauge",
            "gemini_looper_uptime_seconds": "gauge",
            "gemini_looper_config_generation": "gauge"}.items():
        assert types.get(n) == t, (n, types.get(n))

    # 429s by quota class: the stand-in's per-minute 429s (K1 on pro, K1
    # on the forced flash one) and the per-day ones on flash-lite.
    q = {}
    for e in log:
        if e["status"] == 429 and e.get("quota"):
            qs = e["quota"] if isinstance(e["quota"], list) else [e["quota"]]
            cls = "day" if {"rpd", "tpd"} & set(qs) else "minute"
            q[(e["key"], e["model"], cls)] = q.get(
                (e["key"], e["model"], cls), 0) + 1
    assert q, log
    assert q.get((K1, PRO, "minute")) == 1, q
    assert q.get((K1, FLASH, "minute")) == 1, q
    for k in (K1, K2, K3):
        assert q.get((k, LITE, "day")) == 1, q
    got = {}
    for (n, lab), v in fams["gemini_looper_upstream_429_total"][
            "samples"].items():
        lab = dict(lab)
        got[(lab["key"], lab["model"], lab["quota"])] = v
    assert got == {(ids[mask(k)], m, c): n for (k, m, c), n in q.items()}, \
        (got, q)

    # Upstream answers by key, model and class, as the stand-in logged.
    ups = {}
    for e in log:
        if e["status"] is None:
            continue
        k = (ids[mask(e["key"])], e["model"], "%dxx" % (e["status"] // 100))
        ups[k] = ups.get(k, 0) + 1
    got = {}
    for (n, lab), v in fams["gemini_looper_upstream_requests_total"][
            "samples"].items():
        lab = dict(lab)
        got[(lab["key"], lab["model"], lab["class"])] = v
    assert got == ups, (got, ups)

    # Answers to clients by model and class: flash 4 + 1, pro 3, lite 429.
    flash_ok = 5 if st == 200 else 4
    assert val(fams, "gemini_looper_requests_total", model=FLASH,
               **{"class": "2xx"}) == flash_ok
    assert val(fams, "gemini_looper_requests_total", model=PRO,
               **{"class": "2xx"}) == 3
    assert val(fams, "gemini_looper_requests_total", model=LITE,
               **{"class": "4xx"}) == 1
    # Retries: pro's third went on to K2, flash-lite tried every key.
    assert val(fams, "gemini_looper_retries_total", model=PRO) >= 1
    assert val(fams, "gemini_looper_retries_total", model=LITE) >= 2
    assert val(fams, "gemini_looper_waits_total", model=FLASH) == 0

    # Tokens by kind, lifetime counters, as the stand-in reported.
    want = served(log)
    for (k, m), w in want.items():
        for kind in KINDS:
            assert val(fams, "gemini_looper_tokens_total", key=ids[mask(k)],
                       model=m, kind=kind) == w[kind], (mask(k), m, kind)
    assert val(fams, "gemini_looper_tokens_total", key=i1, model=FLASH,
               kind="cached") > 0

    # The duration histogram counts every answer of the model.
    for m in (FLASH, PRO, LITE):
        answers = sum(v for (n, lab), v in fams[
            "gemini_looper_requests_total"]["samples"].items()
            if dict(lab)["model"] == m)
        assert val(fams, "gemini_looper_request_duration_seconds",
                   "gemini_looper_request_duration_seconds_count",
                   model=m) == answers, m
        assert val(fams, "gemini_looper_request_duration_seconds",
                   "gemini_looper_request_duration_seconds_bucket",
                   model=m, le="+Inf") == answers, m
    # TPM used and limit per key x model; key state one-hot.
    c = by_masked(sd, K1)["models"][FLASH]
    assert val(fams, "gemini_looper_tpm_used", key=i1, model=FLASH) == \
        c["tpm_used"]
    assert val(fams, "gemini_looper_tpm_limit", key=i3, model=PRO) == 125000
    assert val(fams, "gemini_looper_tpm_limit", key=i2, model=FLASH) == \
        250000
    for k in sd["keys"]:
        for m, c in k["models"].items():
            for s in ("available", "cooling", "exhausted", "invalid"):
                assert val(fams, "gemini_looper_key_state", key=k["id"],
                           model=m, state=s) == (1 if c["state"] == s else 0)
    assert val(fams, "gemini_looper_keys", state="exhausted") == 3
    busy = val(fams, "gemini_looper_workers", state="busy")
    idle = val(fams, "gemini_looper_workers", state="idle")
    assert busy >= 1 and busy + idle >= 2, (busy, idle)
    assert val(fams, "gemini_looper_build_info", version=sd["version"]) == 1
    assert val(fams, "gemini_looper_up") == 1

    # Counters only go up.
    again = parse_metrics(scrape(d))
    for n, f in fams.items():
        if f["type"] != "counter":
            continue
        for k, v in f["samples"].items():
            assert again[n]["samples"].get(k, 0) >= v, (n, k)
    no_full_keys(d.log())


def test_metrics_parser_rejects_what_promtool_would():
    good = ("# HELP a_total A.\n# TYPE a_total counter\n"
            'a_total{x="1"} 2\n')
    parse_metrics(good)
    bad = [
        good.replace("# HELP a_total A.\n", ""),            # no HELP
        good + 'a_total{x="1"} 3\n',                         # twice
        good.replace("a_total counter", "a_total untyped"),
        "# HELP a A.\n# TYPE a counter\na 1\n",              # no _total
        good.replace('{x="1"}', '{x="1}'),                   # open label
        good.replace(" 2\n", " two\n"),
        good + "# HELP a_total A.\n# TYPE a_total counter\n",
        good[:-1],                                           # no newline
        ("# HELP h H.\n# TYPE h histogram\n"
         'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
         "h_sum 1\nh_count 1\n"),                            # not cumulative
    ]
    for text in bad:
        try:
            parse_metrics(text)
        except (AssertionError, ValueError):
            continue
        raise AssertionError("accepted: %r" % text)
    rc, out = promtool(good)
    assert rc == 0, out
    rc, out = promtool(bad[6])      # HELP twice
    assert rc != 0, out


# --------------------------------------------------------------------------
# admin_token and the page

ADM = "adm1n-t0ken+with/odd=chars"


def test_status_admin_token_guards_all_three():
    si = StandIn()
    d = proxy_daemon(si, admin_token=ADM)
    d.start()
    assert gen(d, FLASH, "traffic needs no admin token")[0] == 200
    q = "?token=" + ADM.replace("+", "%2B").replace("/", "%2F").replace(
        "=", "%3D")
    for path in ("/status", "/status/", "/api/status_data", "/metrics"):
        for hdrs, qs in (({}, ""), ({"Authorization": "Bearer wrong"}, ""),
                         ({}, "?token=wrong"), ({}, "?token=")):
            st, h, raw = d.request("GET", path + qs, headers=hdrs)
            assert st == 401, (path, hdrs, qs, st)
            assert json.loads(raw)["error"]["status"] == "UNAUTHENTICATED"
            assert ADM not in raw.decode()
        st, h, raw = d.request("GET", path,
                               headers={"Authorization": "Bearer " + ADM})
        assert st == 200, (path, st)
        st, h, raw = d.request("GET", path + q)
        assert st == 200, (path, st)
    # HEAD too, and the token in neither the log nor the answer.
    st, _, _ = d.request("HEAD", "/metrics")
    assert st == 401
    st, _, raw = d.request("GET", "/api/status_data" + q)
    assert ADM not in raw.decode()
    assert ADM not in d.log() and ADM.replace("+", "%2B") not in d.log()


def test_status_page_is_embedded_and_self_contained():
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    st, h, raw = d.request("GET", "/status")
    assert st == 200
    hl = {k.lower(): v for k, v in h.items()}
    assert hl["content-type"].startswith("text/html")
    csp = hl["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    page = raw.decode()
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "web",
                           "status.html"), encoding="utf-8") as f:
        assert page == f.read(), "/status is not web/status.html"
    # Nothing from elsewhere: no remote script, style, font or image.
    for pat in (r'<script[^>]+src=', r'<link[^>]+href="(?!data:)',
                r'url\(\s*["\']?(https?:)?//', r'@import',
                r'(src|href)="(https?:)?//'):
        assert not re.search(pat, page, re.I), pat
    assert "prefers-color-scheme: dark" in page
    assert 'name="viewport"' in page
    assert st == 200 and d.request("GET", "/status/")[0] == 200
    assert d.request("GET", "/status/status.html")[0] == 200
    for bad in ("/status/nope.js", "/status/../config.json",
                "/status/%2e%2e/x"):
        assert d.request("GET", bad)[0] == 404, bad
    assert d.request("POST", "/status", b"x", JSON)[0] == 405
