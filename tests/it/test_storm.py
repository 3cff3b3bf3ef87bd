"""Issue 12 §2: 429 storms stop early, against the stand-in Gemini over TLS.

When Google throttles the whole pool (the stand-in's "throttle": every key
answers 429 whatever its project spent), the proxy spends storm.keys
upstream calls, then pauses the model: 429 + Retry-After at once, no
upstream call, until the longest retryDelay; then one request goes first
(half-open), and its success resumes the pool, its 429 pauses again. A 429
that the project's own usage explains never starts a storm; storm.keys 0
turns storms off. The pause shows on /api/status_data and /metrics.
"""
import re
import threading
import time

from lib import wait_for
from standin import FLASH, K1, K2, K3, PRO, StandIn, proxy_daemon
from test_proxy import err_of, finish, gen, hget, status_data

K4 = "AIzaSyLooperIT-project-four-key-000k004"
K5 = "AIzaSyLooperIT-project-five-key-000k005"
K6 = "AIzaSyLooperIT-project-six-key-0000k006"
SIX = [K1, K2, K3, K4, K5, K6]
EXTRA = {"keys": {K4: {"project": "p4"}, K5: {"project": "p5"},
                  K6: {"project": "p6"}}}


def six_keys(standin=None, keys=SIX, **proxy):
    """A stand-in with six projects, and a proxy with (all six) keys."""
    cfg = dict(EXTRA)
    cfg.update(standin or {})
    si = StandIn(cfg)
    d = proxy_daemon(si, priority=keys, secondary=[], **proxy)
    return si, d


def generated(si, since):
    """The generation calls the stand-in saw since seq."""
    return [e for e in si.log(since) if e.get("kind") == "generate"]


def storm_of(d, model=FLASH):
    m = status_data(d)["models"][model]
    return m["storm"]["state"], m["paused_until"], m["storm"]


def metric(d, name, model=FLASH):
    st, _, raw = d.request("GET", "/metrics")
    assert st == 200, st
    m = re.search(r'^%s\{model="%s"\} (\d+)$' % (name, re.escape(model)),
                  raw.decode(), re.M)
    assert m, (name, raw[:500])
    return int(m.group(1))


def storm_429(st, h, raw, most):
    """Our own pause answer: 429 RESOURCE_EXHAUSTED, 1 <= Retry-After <= most."""
    assert st == 429, (st, raw[:300])
    e = err_of(raw)
    assert e["status"] == "RESOURCE_EXHAUSTED" and "paused" in e["message"], e
    ra = int(hget(h, "Retry-After"))
    assert 1 <= ra <= most, (ra, h)
    return ra


def start_storm(si, d, delay, quota=None):
    """Throttle FLASH; the first request spends exactly storm.keys (3)
    upstream calls, on three projects, then gets the pause's 429."""
    si.config({"throttle": {"models": [FLASH], "quota": quota,
                            "retry_delay": delay}})
    since = si.last_seq()
    st, h, raw = gen(d, FLASH, "the storm begins")
    log = generated(si, since)
    assert [e["key"] for e in log] == SIX[:3], [e["key"][-4:] for e in log]
    assert all(e["status"] == 429 and e.get("throttled") for e in log), log
    storm_429(st, h, raw, int(delay) + 1)
    return since


def _storm_stops_early(quota):
    si, d = six_keys()
    d.start()
    assert gen(d, FLASH, "calm")[0] == 200
    assert storm_of(d)[0] == "serving" and storm_of(d)[1] is None
    since = start_storm(si, d, 4, quota)
    # Paused: five more requests, no upstream call, 429 at once.
    t0 = time.monotonic()
    for i in range(5):
        storm_429(*gen(d, FLASH, "refused %d" % i), 4)
    assert time.monotonic() - t0 < 2.0
    assert len(generated(si, since)) == 3
    state, until, storm = storm_of(d)
    assert state == "paused" and until is not None, (state, until)
    # Refused: the first request's fourth attempt, and these five.
    assert storm["storms"] == 1 and storm["refused"] == 6, storm
    assert metric(d, "gemini_looper_model_paused") == 1
    assert metric(d, "gemini_looper_storms_total") == 1
    assert metric(d, "gemini_looper_storm_refused_total") == 6
    # The pause is one model's: another model is served.
    assert gen(d, PRO, "another model")[0] == 200
    assert metric(d, "gemini_looper_model_paused", PRO) == 0
    # The storm passes; once the pause is over one request goes first,
    # and its success resumes the pool.
    si.config({"throttle": None})
    wait_for(lambda: storm_of(d)[0] == "half_open", 6, "the pause's end")
    seq = si.last_seq()
    assert gen(d, FLASH, "the probe")[0] == 200
    assert len(generated(si, seq)) == 1
    state, until, _ = storm_of(d)
    assert state == "serving" and until is None, (state, until)
    assert metric(d, "gemini_looper_model_paused") == 0
    assert gen(d, FLASH, "flowing again")[0] == 200
    assert "429 storm" in d.log() and "resumed" in d.log()
    finish(d)


def test_storm_bare_429s_cost_storm_keys_upstream_calls():
    _storm_stops_early(None)


def test_storm_quota_429s_the_projects_never_spent():
    # Each 429 names the per-minute request quota (quotaValue 10) while
    # its project sent one request: unexplained.
    _storm_stops_early("rpm")


def test_storm_half_open_lets_one_request_through():
    si, d = six_keys()
    d.start()
    start_storm(si, d, 2)
    wait_for(lambda: storm_of(d)[0] == "half_open", 5, "the pause's end")
    # Still throttled: the probe's 429 pauses the model again, after one
    # upstream call.
    seq = si.last_seq()
    st, h, raw = gen(d, FLASH, "probe one")
    assert len(generated(si, seq)) == 1
    storm_429(st, h, raw, 3)
    assert storm_of(d)[0] == "paused"
    assert storm_of(d)[2]["storms"] == 2
    storm_429(*gen(d, FLASH, "still paused"), 3)
    assert len(generated(si, seq)) == 1
    # The storm passes; a slow probe: while it is out, the others are
    # refused without an upstream call, and come back in 1 s.
    si.config({"throttle": None})
    wait_for(lambda: storm_of(d)[0] == "half_open", 5, "the pause's end")
    seq = si.last_seq()
    out = {}

    def probe():
        out["probe"] = gen(d, FLASH, "slow probe STANDIN:sleep_ms=1500")

    t = threading.Thread(target=probe)
    t.start()
    wait_for(lambda: generated(si, seq), 5, "the probe upstream")
    for i in range(3):
        ra = storm_429(*gen(d, FLASH, "behind the probe %d" % i), 1)
        assert ra == 1
    t.join(10)
    assert out["probe"][0] == 200, out["probe"][:2]
    assert len(generated(si, seq)) == 1
    assert storm_of(d)[0] == "serving"
    assert gen(d, FLASH, "resumed")[0] == 200
    finish(d)


def test_storm_probe_whose_client_leaves_does_not_wedge():
    si, d = six_keys()
    d.start()
    start_storm(si, d, 1)
    si.config({"throttle": None})
    wait_for(lambda: storm_of(d)[0] == "half_open", 5, "the pause's end")
    seq = si.last_seq()
    # The probe's client gives up before the answer.
    st = None
    try:
        st = gen(d, FLASH, "leaving probe STANDIN:sleep_ms=3000",
                 timeout=0.5)[0]
    except OSError:
        pass
    assert st is None, st
    wait_for(lambda: [e for e in generated(si, seq)
                      if e.get("completed") is False], 5,
             "the stand-in to see the probe's client leave")
    # The next request probes at once, and resumes the pool.
    assert gen(d, FLASH, "next probe")[0] == 200
    assert storm_of(d)[0] == "serving"
    finish(d)


def test_storm_explained_429s_never_pause():
    # Each project may make 2 requests a minute, and really makes them:
    # its 429s (quotaValue 2) are its own business.
    si, d = six_keys({"quotas": {FLASH: {"rpm": 2}}}, SIX[:4], max_wait_s=0)
    d.start()
    since = si.last_seq()
    sts = [gen(d, FLASH, "busy %d" % i)[0] for i in range(8)]
    assert sts == [200] * 8, sts
    # Every project has spent its quota: 429s from all four, explained.
    st, h, raw = gen(d, FLASH, "one too many")
    assert st == 429, (st, raw[:300])
    assert "paused" not in err_of(raw)["message"], err_of(raw)
    assert sum(1 for e in generated(si, since) if e["status"] == 429) == 4
    state, until, storm = storm_of(d)
    assert state == "serving" and until is None and storm["storms"] == 0
    assert metric(d, "gemini_looper_storms_total") == 0
    finish(d)


def test_storm_keys_0_turns_storms_off():
    si, d = six_keys(storm={"keys": 0}, max_wait_s=0)
    d.start()
    si.config({"throttle": {"models": [FLASH], "retry_delay": 30}})
    since = si.last_seq()
    st, h, raw = gen(d, FLASH, "walks the keys")
    assert st == 429, (st, raw[:300])
    # max_attempts (4) upstream calls, as before storms existed.
    assert len(generated(si, since)) == 4
    st, h, raw = gen(d, FLASH, "and again")
    assert len(generated(si, since)) == 6
    assert "paused" not in err_of(raw)["message"]
    assert storm_of(d)[0] == "serving"
    assert metric(d, "gemini_looper_storms_total") == 0
    finish(d)
