"""Issue 12, keys come back: a key marked invalid is probed with
GET /v1beta/models?pageSize=1 on the key_probe schedule, by the prober
process, and a 200 puts it back in the pool.

  an invalid key returns after its probe, first_s after the marking;
  API_KEY_INVALID waits max_s; a suspended key's interval doubles;
  {"first_s": 0}: no prober, no probes;
  POST /api/keys/{id}/probe (admin) probes now;
  a key whose project spent its day on every model is not probed;
  200 invalid keys: never more than per_s probes in a second.

Probe times are read from the stand-in's log (its clock, to the
microsecond), the schedule from /api/status_data (to the second).
"""
import json
import time

from lib import wait_for
from standin import FLASH, PRO, K1, K2, K3, StandIn, proxy_daemon, mask

JSON = {"Content-Type": "application/json"}
SLACK = 1.5     # what a busy machine may add to a time the daemon keeps


def gen(d, text="hello", model=FLASH):
    body = json.dumps({"contents": [{"role": "user",
                                     "parts": [{"text": text}]}]}).encode()
    return d.request("POST", "/v1beta/models/%s:generateContent" % model,
                     body, JSON, timeout=20)


def status(d, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    st, _, raw = d.request("GET", "/api/status_data", headers=h)
    assert st == 200, (st, raw[:300])
    return json.loads(raw)


def key_of(sd, key):
    found = [k for k in sd["keys"] if k["masked"] == mask(key)]
    assert len(found) == 1, (mask(key), found)
    return found[0]


def iso(t):
    return time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - \
        time.mktime(time.gmtime(0))


def probe_times(si, key):
    return [e["time"] for e in si.log()
            if e.get("page_size") == 1 and e.get("key") == key]


def marked_at(si, key):
    """When the stand-in first rejected key on a generateContent."""
    return min(e["time"] for e in si.log()
               if e.get("key") == key and e.get("status") in (400, 403)
               and e.get("page_size") is None)


def test_probe_invalid_key_returns():
    si = StandIn({"keys": {K1: {"project": "p1", "state": "invalid"}}})
    d = proxy_daemon(si, key_probe={"first_s": 1, "max_s": 4})
    d.start()
    st, _, raw = gen(d)
    assert st == 200, raw[:300]
    k = key_of(status(d), K1)
    assert k["state"] == "invalid", k
    assert k["probe"]["last"] is None and k["probe"]["result"] is None, k
    # The prober runs as a process of its own, not in a worker.
    wait_for(d.prober, 5, "the prober")
    assert d.prober() not in d.workers()
    si.config({"keys": {K1: {"project": "p1", "state": "active"}}})
    k = wait_for(lambda: (lambda x: x if x["state"] != "invalid" else None)(
        key_of(status(d), K1)), 10, "K1 back after its probe")
    assert k["probe"]["result"] == "ok" and k["probe"]["last"], k
    assert k["probe"]["next"] is None and k["invalid_reason"] is None, k
    t = probe_times(si, K1)
    assert len(t) >= 1, t
    # first_s (1 s, +-10 %) after the marking, not before.
    first = t[0] - marked_at(si, K1)
    assert 0.85 <= first <= 1.1 + SLACK, first
    # Back in the pool: it serves again (priority key, first in order,
    # for a model that has no sticky key yet).
    seq = si.last_seq()
    st, _, raw = gen(d, "after the probe", PRO)
    assert st == 200, raw[:300]
    assert [e["key"] for e in si.log(seq) if e.get("model")] == [K1]
    assert d.wait_log("back in the pool")
    assert K1 not in open(d.logfile).read()
    d.stop()


def test_probe_deleted_waits_max_suspended_doubles():
    si = StandIn({"keys": {K1: {"project": "p1", "state": "invalid"},
                           K2: {"project": "p2", "state": "suspended"}}})
    d = proxy_daemon(si, key_probe={"first_s": 2, "max_s": 16})
    d.start()
    st, _, raw = gen(d)
    assert st == 200, raw[:300]
    sd = status(d)
    assert key_of(sd, K1)["state"] == "invalid"
    assert key_of(sd, K2)["state"] == "invalid"
    # K2 (403 CONSUMER_SUSPENDED): probes at 2, then 4 s later (doubled).
    wait_for(lambda: len(probe_times(si, K2)) >= 2, 15, "K2's 2nd probe")
    t2 = probe_times(si, K2)
    assert 1.7 <= t2[0] - marked_at(si, K2) <= 2.2 + SLACK, t2
    assert 3.5 <= t2[1] - t2[0] <= 4.4 + SLACK, t2
    sd = status(d)
    k1, k2 = key_of(sd, K1), key_of(sd, K2)
    # K1 (400 API_KEY_INVALID): probed once, then max_s (16 s +-10 %).
    assert len(probe_times(si, K1)) == 1, probe_times(si, K1)
    assert k1["probe"]["result"] == 400 and k1["state"] == "invalid", k1
    gap = iso(k1["probe"]["next"]) - iso(k1["probe"]["last"])
    assert 13 <= gap <= 19, k1["probe"]
    assert k2["probe"]["result"] == 403, k2
    gap = iso(k2["probe"]["next"]) - iso(k2["probe"]["last"])
    assert 6 <= gap <= 10, k2["probe"]      # 8 s +-10 %, to the second
    assert k2["invalid_reason"] == "CONSUMER_SUSPENDED", k2
    # /metrics counts the probes by result.
    st, _, raw = d.request("GET", "/metrics")
    text = raw.decode()
    assert 'gemini_looper_key_probes_total{result="invalid"} 1' in text
    assert 'gemini_looper_key_probes_total{result="refused"} 2' in text
    assert K2 not in text and K2 not in json.dumps(sd)
    d.stop()


def test_probe_off():
    si = StandIn({"keys": {K1: {"project": "p1", "state": "invalid"}}})
    d = proxy_daemon(si, key_probe={"first_s": 0}, persist_interval_s=1)
    d.start()
    st, _, raw = gen(d)
    assert st == 200, raw[:300]
    d.wait_ticks(3)
    assert d.prober() is None
    assert si.probes()["total"] == 0
    k = key_of(status(d), K1)
    assert k["state"] == "invalid" and k["probe"] == {
        "last": None, "next": None, "result": None}, k
    d.stop()


def test_probe_admin_post():
    tok = "admin-token-for-probe-tests"
    si = StandIn({"keys": {K1: {"project": "p1", "state": "invalid"}}})
    d = proxy_daemon(si, admin_token=tok,
                     key_probe={"first_s": 3600, "max_s": 7200})
    d.start()
    st, _, raw = gen(d)
    assert st == 200, raw[:300]
    k = key_of(status(d, tok), K1)
    assert k["state"] == "invalid", k
    path = "/api/keys/%s/probe" % k["id"]
    auth = {"Authorization": "Bearer " + tok}
    st, _, raw = d.request("POST", path)
    assert st == 401, raw
    st, _, raw = d.request("GET", path, headers=auth)
    assert st == 405, raw
    st, _, raw = d.request("POST", "/api/keys/nothex!!/probe", headers=auth)
    assert st == 400 and json.loads(raw)["error"]["code"] == 400, raw
    st, _, raw = d.request("POST", "/api/keys/00000000/probe", headers=auth)
    assert st == 404 and json.loads(raw)["error"]["status"] == "NOT_FOUND"
    # Still rejected: the answer says so, the key stays out.
    st, _, raw = d.request("POST", path, headers=auth)
    assert st == 200, raw
    a = json.loads(raw)
    assert a["valid"] is False and a["status"] == 400, a
    assert "not valid" in a["message"] and K1 not in raw.decode(), a
    si.config({"keys": {K1: {"project": "p1", "state": "active"}}})
    st, _, raw = d.request("POST", path, headers=auth)
    assert st == 200, raw
    a = json.loads(raw)
    assert a["valid"] is True and a["status"] == 200, a
    assert set(a) == {"valid", "status", "message"}, a
    k = key_of(status(d, tok), K1)
    assert k["state"] != "invalid" and k["probe"]["result"] == "ok", k
    assert si.probes()["by_key"].get(K1) == 2
    # A key found deleted by an operator's probe leaves the pool.
    si.config({"keys": {K2: {"project": "p2", "state": "invalid"}}})
    k2 = key_of(status(d, tok), K2)
    st, _, raw = d.request("POST", "/api/keys/%s/probe" % k2["id"],
                           headers=auth)
    assert st == 200 and json.loads(raw)["valid"] is False, raw
    k2 = key_of(status(d, tok), K2)
    assert k2["state"] == "invalid" and k2["probe"]["result"] == 400, k2
    assert k2["probe"]["next"] is not None, k2
    d.stop()


def test_probe_exhausted_not_probed():
    si = StandIn()
    d = proxy_daemon(si, priority=[K1], secondary=[],
                     models={FLASH: {"tpm_limit": None, "tpd_limit": None}},
                     key_probe={"first_s": 1, "max_s": 2},
                     persist_interval_s=1)
    d.start()
    st, _, raw = gen(d, "spend the day STANDIN:quota=rpd")
    assert st == 429, raw[:300]
    k = key_of(status(d), K1)
    assert k["models"][FLASH]["state"] == "exhausted", k
    # A call that costs no quota still goes to the spent key: it is
    # rejected there, and the key is marked invalid.
    si.config({"keys": {K1: {"project": "p1", "state": "invalid"}}})
    st, _, raw = d.request("GET", "/v1beta/models")
    assert st == 503, raw[:300]     # every key of the pool is invalid
    sd = status(d)
    assert key_of(sd, K1)["state"] == "invalid", key_of(sd, K1)
    d.wait_ticks(4)
    assert si.probes()["total"] == 0, si.probes()
    # Its next probe waits for the daily reset (first_s after it).
    k = key_of(status(d), K1)
    reset = iso(sd["next_quota_reset_utc"]) if "next_quota_reset_utc" in sd \
        else None
    assert k["probe"]["next"] is not None, k
    if reset is not None:
        assert reset <= iso(k["probe"]["next"]) <= reset + 2, (k, reset)
    d.stop()


def test_probe_cap_many_keys():
    keys = ["AIzaSyLooperIT-many-invalid-key-%07d" % i for i in range(200)]
    si = StandIn()      # not listed: 400 API_KEY_INVALID
    d = proxy_daemon(si, priority=keys, secondary=[], max_attempts=64,
                     key_probe={"first_s": 1, "max_s": 2, "per_s": 5})
    d.start()
    for _ in range(4):
        st, _, raw = gen(d)
        assert st in (429, 503), raw[:300]
    sd = status(d)
    assert all(k["state"] == "invalid" for k in sd["keys"]), \
        [k["state"] for k in sd["keys"]]
    wait_for(lambda: si.probes()["total"] >= 40, 30, "40 probes")
    p = si.probes()
    assert p["max_per_second"] <= 5, p["by_second"]
    # Earliest due first: the probes spread over the keys.
    assert len(p["by_key"]) >= 35 and max(p["by_key"].values()) <= 2, p
    d.stop()
