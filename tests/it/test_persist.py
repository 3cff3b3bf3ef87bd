"""Issue 4: usage that survives restarts and crashes; the daily reset.

Restart (SIGTERM and kill -9) with counts, states and sticky keys intact, a
restart that does not touch a cooling or exhausted key, a reset that was due
while the daemon was down, next_quota_reset_datetime written back into the
config leaving every other byte alone, a reset at its time (via a reload that
names a past instant), a schedule changed by a reload, a corrupt usage file
moved aside, a directory that refuses writes, and kill -9 of the master in a
loop while it writes: the file always parses and never goes backwards.
"""
import datetime
import glob
import hashlib
import json
import os
import random
import re
import signal
import stat
import subprocess
import threading
import time
import zoneinfo

import lib
from lib import wait_for, alive
from standin import (FLASH, PRO, K1, K2, K3, StandIn, proxy_daemon, mask)

JSON = {"Content-Type": "application/json"}
FIELD = "next_quota_reset_datetime"


# --------------------------------------------------------------------------
# helpers

def key_id(key):
    """The 8-hex id the daemon shows for a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def key_fp(key):
    """The usage file's second fingerprint (see src/persist.c)."""
    return hashlib.sha256(b"gemini-looper usage-file fingerprint\n" +
                          key.encode()).hexdigest()[:16]


def gen(d, model=FLASH, text="Hello there", timeout=20):
    body = json.dumps({"contents": [{"role": "user",
                                     "parts": [{"text": text}]}]}).encode()
    return d.request("POST", "/v1beta/models/%s:generateContent" % model,
                     body, JSON, timeout=timeout)


def status_data(d):
    st, _, raw = d.request("GET", "/api/status_data")
    assert st == 200, (st, raw[:300])
    return json.loads(raw)


def cell(sd, key, model):
    for k in sd["keys"]:
        if k["masked"] == mask(key):
            return k["models"].get(model)
    raise AssertionError("no key %s in status_data" % mask(key))


def counts(sd, key, model):
    c = cell(sd, key, model)
    if c is None:
        return (0, 0)
    return (c["requests_today"], c["tokens_today"]["total"])


def usage_path(d):
    return os.path.join(d.dir, "key_usage.json")


def read_usage(d):
    with open(usage_path(d)) as f:
        return json.load(f)


def file_requests(data, key=None, model=None):
    """Successful requests the usage file counts (for a key / model)."""
    n = 0
    for k in data.get("keys", []):
        if key is not None and k["id"] != key_id(key):
            continue
        for m, c in k.get("models", {}).items():
            if model is None or m == model:
                n += c.get("requests", 0)
    return n


def now_ms():
    return int(time.time() * 1000)


def next_local(tz, hhmm, after=None):
    """The next hh:mm in zone tz strictly after `after` (aware datetime)."""
    z = zoneinfo.ZoneInfo(tz)
    after = after or datetime.datetime.now(datetime.timezone.utc)
    local = after.astimezone(z)
    h, m = map(int, hhmm.split(":"))
    cand = local.replace(hour=h, minute=m, second=0, microsecond=0)
    if cand <= local:
        cand = (cand + datetime.timedelta(days=1)).replace(hour=h, minute=m)
    return cand


def fmt(dt):
    return dt.strftime("%Y-%m-%d %H:%M")


def config_text(d):
    with open(d.config_path, "rb") as f:
        return f.read()


def write_raw_config(d, text):
    d.write_config(raw=text)


def odd_json(cfg):
    """cfg as JSON in a layout nobody's serializer would produce."""
    return (json.dumps(cfg, indent=3, separators=(",", " :  ")) +
            "\n\n").replace('\n   "', '\n \t "')


def seed_usage(d, keys_models, last_reset, next_reset, extra=None):
    """Write a usage file as a previous run would have left it.
    keys_models: {key: {model: cell-dict}}."""
    data = {"version": 1, "reset_after": d.cfg.get("reset_after", "00:00"),
            "timezone": d.cfg.get("timezone", "UTC"),
            "last_reset": last_reset, "next_reset": next_reset,
            "keys": [{"id": key_id(k), "fp": key_fp(k), "models": cells}
                     for k, cells in keys_models.items()],
            "models": {}, "affinity": []}
    data.update(extra or {})
    with open(usage_path(d), "w") as f:
        json.dump(data, f)
    os.chmod(usage_path(d), 0o600)


def finish(d):
    assert d.stop() == 0
    assert "ERROR: AddressSanitizer" not in d.log(), d.log()[-3000:]
    assert "runtime error:" not in d.log(), d.log()[-3000:]


def kill9(d):
    """kill -9 the master only; its workers must notice and go."""
    kids = d.workers()
    os.kill(d.master, signal.SIGKILL)
    d.wait_exit(10)
    wait_for(lambda: not any(alive(k) for k in kids), 10,
             "workers to exit after the master died")


# --------------------------------------------------------------------------
# restarts


def test_persist_restart_keeps_counts_states_sticky_keys():
    # K1's project: one flash request a day, one pro request a minute.
    si = StandIn({"projects": {"p1": {"quotas": {FLASH: {"rpd": 1},
                                                 PRO: {"rpm": 1}}}}})
    d = proxy_daemon(si, persist_interval_s=1)
    d.start()
    for text in ("one", "two", "three"):
        st, _, raw = gen(d, FLASH, text)
        assert st == 200, raw[:300]
    for text in ("four", "five"):
        st, _, raw = gen(d, PRO, text)
        assert st == 200, raw[:300]
    sd = status_data(d)
    assert cell(sd, K1, FLASH)["state"] == "exhausted"
    assert cell(sd, K1, PRO)["state"] == "cooling"
    assert sd["current_keys"] == {FLASH: key_id(K2), PRO: key_id(K2)}, \
        sd["current_keys"]
    before = {(k, m): (counts(sd, k, m), cell(sd, k, m) and
                       (cell(sd, k, m)["state"],
                        cell(sd, k, m)["cooldown_until"],
                        cell(sd, k, m)["tpd_used"]))
              for k in (K1, K2, K3) for m in (FLASH, PRO)}
    finish(d)

    st = os.stat(usage_path(d))
    assert stat.S_IMODE(st.st_mode) == 0o600
    text = open(usage_path(d)).read()
    for k in (K1, K2, K3):
        assert k not in text
    assert json.loads(text)["version"] == 1

    d.start()
    sd = status_data(d)
    after = {(k, m): (counts(sd, k, m), cell(sd, k, m) and
                      (cell(sd, k, m)["state"],
                       cell(sd, k, m)["cooldown_until"],
                       cell(sd, k, m)["tpd_used"]))
             for k in (K1, K2, K3) for m in (FLASH, PRO)}
    assert after == before, (before, after)
    assert sd["current_keys"] == {FLASH: key_id(K2), PRO: key_id(K2)}
    # The cooling and the exhausted key are left alone after the restart.
    since = si.last_seq()
    assert gen(d, FLASH, "six")[0] == 200
    assert gen(d, PRO, "seven")[0] == 200
    assert [e["key"] for e in si.log(since)] == [K2, K2]
    finish(d)

    # A key no longer configured is dropped; the others keep their usage.
    d.cfg["priority_keys"] = [K2]
    d.write_config()
    d.start()
    sd = status_data(d)
    assert [k["masked"] for k in sd["keys"]] == [mask(K2), mask(K3)]
    # K2 served "two", "three" and, after the first restart, "six".
    assert before[(K2, FLASH)][0][0] == 2
    assert counts(sd, K2, FLASH)[0] == 3
    assert "1 no longer configured (dropped)" in d.log()
    finish(d)


def test_persist_kill9_restart_loses_at_most_an_interval():
    si = StandIn()
    d = proxy_daemon(si, persist_interval_s=1)
    d.start()
    for i in range(4):
        assert gen(d, FLASH, "request %d" % i)[0] == 200
    # A worker settles a request just after its answer has gone out.
    want = wait_for(lambda: (lambda c: c if c[0] == 4 else None)(
        counts(status_data(d), K1, FLASH)), 10, "4 requests counted")
    # The next save (an interval and a tick away) has them: what the
    # restart must show.  How much a kill may lose is test_faults.py's.
    wait_for(lambda: os.path.exists(usage_path(d)) and
             file_requests(read_usage(d), K1, FLASH) == 4, 20,
             "the usage file to hold 4 requests")
    kill9(d)
    d.start()
    assert counts(status_data(d), K1, FLASH) == want
    finish(d)


# --------------------------------------------------------------------------
# the daily reset


def test_persist_reset_due_at_start_and_config_written_back():
    si = StandIn()
    d = proxy_daemon(si, reset_after="03:00", timezone="Asia/Shanghai")
    now = datetime.datetime.now(datetime.timezone.utc)
    due = next_local("Asia/Shanghai", "03:00") - datetime.timedelta(days=1)
    assert due.timestamp() < now.timestamp()
    # The config names the reset that passed while the daemon was down,
    # in a layout of the user's own.
    cfg = dict(d.cfg)
    order = list(cfg)
    order.insert(order.index("reset_after") + 1, FIELD)
    cfg[FIELD] = fmt(due)
    cfg = {k: cfg[k] for k in order}
    raw = odd_json(cfg)
    write_raw_config(d, raw)
    os.chmod(d.config_path, 0o640)
    seed_usage(d, {K1: {FLASH: {"requests": 5, "total": 500, "prompt": 400,
                                "tpd_used": 400, "rpd_used": 5,
                                "state": "exhausted", "reason": "rpd"}},
                   K2: {FLASH: {"requests": 2, "total": 20}}},
               last_reset=int(due.timestamp() * 1000) - 86400000,
               next_reset=int(due.timestamp() * 1000))
    d.start()
    sd = status_data(d)
    assert counts(sd, K1, FLASH) == (0, 0), cell(sd, K1, FLASH)
    assert counts(sd, K2, FLASH) == (0, 0)
    c = cell(sd, K1, FLASH)
    assert c is None or c["state"] == "available", c
    assert "was missed while the daemon was down" in d.log(), d.log()
    nxt = next_local("Asia/Shanghai", "03:00")
    assert sd["next_quota_reset"] == fmt(nxt), sd["next_quota_reset"]
    # The config: that one value changed, every other byte as written.
    want = raw.replace('"%s" :  "%s"' % (FIELD, fmt(due)),
                       '"%s" :  "%s"' % (FIELD, fmt(nxt)))
    assert want != raw
    assert config_text(d).decode() == want
    assert stat.S_IMODE(os.stat(d.config_path).st_mode) == 0o640
    # The usage file says the reset happened.
    data = read_usage(d)
    assert data["last_reset"] >= int(now.timestamp() * 1000)   # by d.start()
    assert data["next_reset"] == int(nxt.timestamp() * 1000)
    assert gen(d, FLASH, "fresh day")[0] == 200
    finish(d)


def test_persist_next_reset_inserted_when_absent():
    si = StandIn()
    d = proxy_daemon(si, reset_after="00:00", timezone="America/Los_Angeles")
    raw = odd_json(d.cfg)
    assert FIELD not in raw
    write_raw_config(d, raw)
    d.start()
    nxt = next_local("America/Los_Angeles", "00:00")
    m = re.search(r'"reset_after" :  "00:00"', raw)
    assert m
    want = (raw[:m.end()] + ',\n \t "%s" :  "%s"' % (FIELD, fmt(nxt)) +
            raw[m.end():])
    assert config_text(d).decode() == want, config_text(d).decode()
    # Still a config the daemon accepts, with the value it wrote.
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(want)[FIELD] == fmt(nxt)
    # A restart finds the value and leaves the file alone.
    mtime = os.stat(d.config_path).st_mtime_ns
    finish(d)
    d.start()
    assert os.stat(d.config_path).st_mtime_ns == mtime
    assert status_data(d)["next_quota_reset"] == fmt(nxt)
    finish(d)


def test_persist_reset_at_its_time_and_schedule_reload():
    si = StandIn()
    d = proxy_daemon(si, persist_interval_s=1)
    d.start()
    for i in range(3):
        assert gen(d, FLASH, "before the reset %d" % i)[0] == 200
    # A worker settles a request just after its answer has gone out.
    wait_for(lambda: counts(status_data(d), K1, FLASH)[0] == 3, 10,
             "3 requests counted")
    midnight = next_local("UTC", "00:00")
    assert json.loads(config_text(d))[FIELD] == fmt(midnight)
    # The user sets the next reset to this very minute (already begun)
    # and reloads: the master's tick resets at once.
    this_minute = datetime.datetime.now(datetime.timezone.utc)
    text = config_text(d).decode().replace(
        '"%s": "%s"' % (FIELD, fmt(midnight)),
        '"%s": "%s"' % (FIELD, fmt(this_minute)))
    write_raw_config(d, text)
    d.signal(signal.SIGHUP)
    wait_for(lambda: counts(status_data(d), K1, FLASH) == (0, 0), 20,
             "the daily counters to be cleared")
    d.wait_log("daily counters and exhaustion cleared")
    sd = status_data(d)
    assert sd["last_reset"] is not None
    assert sd["next_quota_reset"] == fmt(midnight)
    wait_for(lambda: json.loads(config_text(d))[FIELD] == fmt(midnight), 20,
             "the config to name the next midnight again")
    assert config_text(d).decode() == text.replace(fmt(this_minute),
                                                   fmt(midnight))
    wait_for(lambda: read_usage(d)["last_reset"] > 0, 20, "usage file")
    assert file_requests(read_usage(d)) == 0

    # A new schedule by reload: computed and written back at once.
    cfg = json.loads(config_text(d))
    cfg["reset_after"] = "13:37"
    cfg["timezone"] = "Asia/Shanghai"
    d.write_config(cfg)
    d.signal(signal.SIGHUP)
    want = fmt(next_local("Asia/Shanghai", "13:37"))
    wait_for(lambda: json.loads(config_text(d))[FIELD] == want, 20,
             "the config to name the new schedule's next reset")
    wait_for(lambda: status_data(d)["next_quota_reset"] == want, 20,
             "status_data to show it")
    finish(d)


# --------------------------------------------------------------------------
# bad files and bad disks


def test_persist_corrupt_file_moved_aside():
    si = StandIn()
    d = proxy_daemon(si, persist_interval_s=1)
    garbage = '{"version": 1, "keys": [{"id": "7bec5870", "mod'
    with open(usage_path(d), "w") as f:
        f.write(garbage)
    d.start()
    aside = glob.glob(usage_path(d) + ".corrupt-*")
    assert len(aside) == 1, os.listdir(d.dir)
    assert re.search(r"\.corrupt-\d{8}T\d{6}$", aside[0]), aside
    assert open(aside[0]).read() == garbage
    log = d.log()
    assert "moved aside" in log and usage_path(d) in log, log
    assert gen(d, FLASH, "works")[0] == 200
    wait_for(lambda: os.path.exists(usage_path(d)) and
             file_requests(read_usage(d)) == 1, 20, "a fresh usage file")
    finish(d)


def _make_unwritable(path):
    """Make directory path refuse new files, as root too.  Returns the
    undo function.  Root ignores modes: use the immutable attribute when
    the file system has it, else put a directory where the temp file goes
    (open(O_CREAT) of a directory fails for root as well)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o500)
        return lambda: os.chmod(path, 0o700)
    r = subprocess.run(["chattr", "+i", path], capture_output=True)
    probe = os.path.join(path, ".probe")
    if r.returncode == 0:
        try:
            open(probe, "w").close()
            os.unlink(probe)
        except OSError:
            return lambda: subprocess.run(["chattr", "-i", path],
                                          capture_output=True)
        subprocess.run(["chattr", "-i", path], capture_output=True)
    tmp = os.path.join(path, ".key_usage.json.tmp")
    os.mkdir(tmp)
    return lambda: os.rmdir(tmp)


def test_persist_unwritable_directory_keeps_old_file():
    si = StandIn()
    d = proxy_daemon(si, persist_interval_s=1)
    d.start()
    for i in range(2):
        assert gen(d, FLASH, "early %d" % i)[0] == 200
    wait_for(lambda: os.path.exists(usage_path(d)) and
             file_requests(read_usage(d)) == 2, 20, "the usage file")
    good = open(usage_path(d), "rb").read()
    undo = _make_unwritable(d.dir)
    lib._cleanups.append(lambda: undo() if undo else None)
    try:
        for i in range(3):
            st, _, raw = gen(d, FLASH, "late %d" % i)
            assert st == 200, raw[:300]
        # Several intervals go by: one error line, the old file intact.
        d.wait_log("not written", timeout=20)
        # Absence over time: retries each second must not log again.
        time.sleep(3.5)
        assert open(usage_path(d), "rb").read() == good
        assert d.log().count("not written") == 1, d.log()
        assert counts(status_data(d), K1, FLASH)[0] == 5
    finally:
        undo()
        undo = None
    d.wait_log("written again", timeout=20)
    wait_for(lambda: file_requests(read_usage(d)) == 5, 20, "usage file")
    assert d.log().count("not written") == 1
    assert d.log().count("written again") == 1
    finish(d)


def test_persist_kill9_loop_file_always_parses():
    """kill -9 the master over and over, half the time the instant its
    temp file appears (mid-write), half at a random moment, with traffic
    running: the usage file always parses, holds what was seeded, and its
    counts never go backwards."""
    si = StandIn()
    d = proxy_daemon(si, persist_interval_s=1, workers=2)
    # A bigger file: a write takes a while.  Files from today.
    now = now_ms()
    aff = [{"name": "files/seed%05d" % i, "key": key_id(K2), "fp": key_fp(K2),
            "created": now} for i in range(1500)]
    seed_usage(d, {K2: {PRO: {"requests": 1, "total": 10}}}, 0,
               int(next_local("UTC", "00:00").timestamp() * 1000),
               extra={"affinity": aff})
    tmp = os.path.join(d.dir, ".key_usage.json.tmp")
    rng = random.Random(4)
    prev = 0
    iterations = mid_write = 0
    deadline = time.monotonic() + 60
    while iterations < 14 and time.monotonic() < deadline:
        d.start()
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    gen(d, FLASH, "load", timeout=5)
                except Exception:  # noqa: BLE001 - the master was killed
                    return
        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        if iterations % 2 == 0:
            # Wait for a write in progress and kill it right there.
            if os.path.exists(tmp):
                os.unlink(tmp)
            end = time.monotonic() + 5
            while not os.path.exists(tmp) and time.monotonic() < end:
                pass
            if os.path.exists(tmp):
                mid_write += 1
        else:
            time.sleep(rng.uniform(0.2, 2.5))
        kill9(d)
        stop.set()
        t.join(10)
        assert not glob.glob(usage_path(d) + ".corrupt-*")
        with open(usage_path(d)) as f:
            data = json.load(f)          # always parses
        n = file_requests(data)
        assert n >= prev, (n, prev)      # never backwards
        assert len(data["affinity"]) == 1500
        assert file_requests(data, K2, PRO) == 1
        prev = n
        iterations += 1
    assert iterations >= 6, iterations
    assert mid_write >= 2, mid_write
    assert prev > 1, prev
    # The last run's file is what the next start shows.
    d.start()
    sd = status_data(d)
    total = sum(counts(sd, k, m)[0] for k in (K1, K2, K3)
                for m in (FLASH, PRO))
    assert total == prev, (total, prev)
    finish(d)
