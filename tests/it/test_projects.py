"""Issue 12, projects: keys of one Google Cloud project share its quota.

Keys given as {"key", "project", "label"} share one set of counters and
one state per model; a quota 429 on one key cools the model for all of
its project, so its siblings are never tried; the configured limits apply
to the project; /api/status_data shows keys[].project/label and projects;
the usage file keeps projects across restarts, and a key moved to another
project on reload takes nothing with it.
"""
import json
import os
import signal

import lib
from lib import wait_for
from standin import FLASH, PRO, K1, K2, K3, StandIn, proxy_daemon, mask
import test_proxy as tp


def obj(key, project=None, label=None):
    o = {"key": key}
    if project is not None:
        o["project"] = project
    if label is not None:
        o["label"] = label
    return o


def keys_of(log):
    return [(mask(e["key"]), e["status"]) for e in log]


def test_projects_sibling_never_tried_after_429():
    # K1 and K2 are one project at the stand-in and in the config; it
    # allows 2 requests a minute.  K3 is its own project.
    si = StandIn({"keys": {K1: {"project": "shared"},
                           K2: {"project": "shared"}},
                  "projects": {"shared": {"quotas": {FLASH: {"rpm": 2}}}}})
    d = proxy_daemon(si, priority=[obj(K1, "team-a", "alice"),
                                   obj(K2, "team-a")],
                     secondary=[K3])
    d.start()
    since = si.last_seq()
    for i in range(3):
        st, _, raw = tp.gen(d, FLASH, "project %d" % i)
        assert st == 200, raw[:300]
    log = si.log(since)
    # Two on K1, then its 429: the next goes to K3, never to K2.
    assert keys_of(log) == [(mask(K1), 200), (mask(K1), 200),
                            (mask(K1), 429), (mask(K3), 200)], keys_of(log)
    since = si.last_seq()
    st, _, raw = tp.gen(d, FLASH, "still not K2")
    assert st == 200
    assert [e["key"] for e in si.log(since)] == [K3]

    sd = tp.status_data(d)
    k1, k2 = tp.key_entry(sd, K1), tp.key_entry(sd, K2)
    assert k1["project"] == "team-a" and k1["label"] == "alice", k1
    assert k2["project"] == "team-a" and k2["label"] is None, k2
    assert tp.key_entry(sd, K3)["project"] is None
    # Both keys show the project's state; each keeps its own counts.
    assert k1["models"][FLASH]["state"] == "cooling", k1["models"][FLASH]
    assert k2["models"][FLASH]["state"] == "cooling", k2["models"][FLASH]
    assert k2["models"][FLASH]["requests_today"] == 0
    assert k1["models"][FLASH]["requests_today"] == 2
    p = sd["projects"]["team-a"]
    assert p["keys"] == [k1["id"], k2["id"]], p
    assert p["state"] == "cooling"
    assert p["models"][FLASH]["state"] == "cooling"
    assert p["models"][FLASH]["requests_today"] == 2
    assert p["models"][FLASH]["reason"] in ("rpm", "429"), p
    # The other model is untouched for the project.
    assert p["models"][PRO]["state"] == "available"
    assert list(sd["projects"]) == ["team-a"]
    tp.finish(d)


def test_projects_limits_apply_to_the_project():
    # rpm_limit 3 for the project: K1 + K2 together serve 3 a minute,
    # then the pool moves on to K3 without asking the upstream.
    si = StandIn()
    models = {FLASH: {"rpm_limit": 3, "tpm_limit": None}}
    d = proxy_daemon(si, priority=[obj(K1, "team-a"), obj(K2, "team-a")],
                     secondary=[K3], models=models)
    d.start()
    since = si.last_seq()
    for i in range(5):
        st, _, raw = tp.gen(d, FLASH, "limit %d" % i)
        assert st == 200, raw[:300]
    log = si.log(since)
    assert [e["key"] for e in log] == [K1, K1, K1, K3, K3], keys_of(log)
    assert all(e["status"] == 200 for e in log)
    sd = tp.status_data(d)
    c = sd["projects"]["team-a"]["models"][FLASH]
    assert c["rpm_used"] == 3 and c["rpm_limit"] == 3, c
    tp.finish(d)


def test_projects_plain_keys_unchanged():
    # Plain strings: each key its own project, no projects listed.
    si = StandIn()
    d = proxy_daemon(si)
    d.start()
    st, _, raw = tp.gen(d, FLASH, "plain")
    assert st == 200
    sd = tp.status_data(d)
    assert sd["projects"] == {}
    for k in (K1, K2, K3):
        e = tp.key_entry(sd, k)
        assert e["project"] is None and e["label"] is None
    tp.finish(d)


def usage_file(d):
    with open(os.path.join(d.dir, "key_usage.json")) as f:
        return json.load(f)


def test_projects_usage_file_and_reload():
    si = StandIn()
    models = {FLASH: {"rpm_limit": 4, "tpm_limit": None, "rpd_limit": 10}}
    d = proxy_daemon(si, priority=[obj(K1, "team-a"), obj(K2, "team-a")],
                     secondary=[obj(K3, "team-b")], models=models,
                     persist_interval_s=1)
    d.start()
    for i in range(3):
        st, _, raw = tp.gen(d, FLASH, "saved %d" % i)
        assert st == 200, raw[:300]

    def saved():
        if not os.path.exists(os.path.join(d.dir, "key_usage.json")):
            return None
        u = usage_file(d)
        c = u.get("projects", {}).get("team-a", {}).get("models", {})
        return c.get(FLASH, {}).get("rpd_used") == 3 and u
    u = wait_for(saved, 10, "team-a in the usage file")
    assert K1 not in json.dumps(u) and K2 not in json.dumps(u)
    assert os.stat(os.path.join(d.dir, "key_usage.json")).st_mode & 0o077 \
        == 0

    # Restart: the project's day comes back (3 of rpd 10 used).
    d.stop()
    d.start()
    sd = tp.status_data(d)
    assert sd["projects"]["team-a"]["models"][FLASH]["rpd_used"] == 3, \
        sd["projects"]["team-a"]
    assert sd["projects"]["team-a"]["models"][FLASH]["rpm_used"] == 3

    # Reload moving K2 to team-b: team-b gains nothing, team-a keeps 3.
    d.write_config(dict(d.cfg, priority_keys=[obj(K1, "team-a"),
                                              obj(K2, "team-b")]))
    gen_before = sd["config_generation"]
    d.signal(signal.SIGHUP)
    wait_for(lambda: tp.status_data(d)["config_generation"] > gen_before,
             10, "reload")
    sd = tp.status_data(d)
    assert sd["projects"]["team-a"]["models"][FLASH]["rpd_used"] == 3
    assert sd["projects"]["team-a"]["keys"] == [tp.kid(sd, K1)]
    tb = sd["projects"]["team-b"]
    assert tb["keys"] == [tp.kid(sd, K2), tp.kid(sd, K3)], tb
    assert tb["models"].get(FLASH, {}).get("rpd_used", 0) == 0, tb
    # K2's own count of the day stays with K2 (what it served itself).
    tp.finish(d)
