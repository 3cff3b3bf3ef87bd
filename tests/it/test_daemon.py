"""The daemon core: -t, first start without a config, pidfile, workers
replaced, the pool following the load, reload, graceful stop."""
import json
import os
import signal
import socket
import stat

import lib
from lib import Daemon, wait_for, alive


def test_config_test_ok():
    d = Daemon()
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_config_test_bad_names_file_and_field():
    d = Daemon()
    d.cfg["reset_after"] = "25:00"
    d.write_config()
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 1
    assert d.config_path in r.stderr or "config.json" in r.stderr, r.stderr
    assert "reset_after" in r.stderr, r.stderr


def test_config_test_syntax_error_line_column():
    d = Daemon()
    d.write_config(raw='{\n  "priority_keys": ["a"],\n  "models": {,}\n}\n')
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 1
    assert ":3:" in r.stderr, r.stderr


def test_version():
    d = Daemon()
    r = d.run("-V")
    assert r.returncode == 0 and "gemini-looper" in r.stdout


def test_autocreated_config():
    d = Daemon()
    os.unlink(d.config_path)
    # The defaults listen on 48888: only run when it is free.
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 48888))
    except OSError:
        s.close()
        return
    s.close()
    d.start_fg()
    st = os.stat(d.config_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    cfg = json.load(open(d.config_path))
    # Today's Flash models with their free-tier limits (README).
    assert cfg["models"]["gemini-3.8-flash"]["rpd_limit"] == 20
    assert cfg["models"]["gemini-3.5-flash-lite"]["rpm_limit"] == 15
    assert cfg["default_model"] == "gemini-3.8-flash"
    err = "".join(d.stderr_lines)
    assert "created" in err and "placeholder" in err, err
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0


def test_healthz_and_404():
    d = Daemon()
    d.start()
    st, h, body = d.request("GET", "/healthz")
    assert st == 200 and b"ok" in body
    st, h, body = d.request("GET", "/nothing-here")
    assert st == 404
    err = json.loads(body)["error"]
    assert err["code"] == 404 and err["status"] == "NOT_FOUND"
    assert d.stop() == 0


def test_daemonizes_and_proctitles():
    d = Daemon()
    d.start()
    assert alive(d.master)
    assert "master" in lib.cmdline(d.master)
    ws = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    assert all("worker" in lib.cmdline(w) for w in ws)
    assert d.stop() == 0
    assert not os.path.exists(d.pidfile)
    for w in ws:
        assert not alive(w)


def test_second_instance_refused():
    d = Daemon()
    d.start()
    r = d.run("-c", d.config_path)
    assert r.returncode == 1
    assert str(d.master) in r.stderr, r.stderr
    assert d.stop() == 0


def test_bind_failure_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    d = Daemon(listen="127.0.0.1:%d" % s.getsockname()[1])
    try:
        r = d.run("-c", d.config_path)
        assert r.returncode == 1
        assert "listen" in r.stderr, r.stderr
        assert not os.path.exists(d.pidfile)
    finally:
        s.close()


def test_killed_worker_is_replaced():
    d = Daemon()
    d.start()
    ws = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    victim = ws[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in d.workers() and len(d.workers()) >= 2,
             what="a replacement worker")
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200
    d.wait_log("killed by signal 9")
    assert d.stop() == 0


def test_workers_die_with_master():
    d = Daemon()
    d.start()
    ws = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    os.kill(d.master, signal.SIGKILL)
    os.waitpid(d.master, 0)
    wait_for(lambda: not any(alive(w) for w in ws), timeout=10,
             what="workers to exit after the master died")


def _slow_conns(d, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends
        socks.append(s)
    return socks


def test_pool_grows_and_shrinks():
    d = Daemon(workers={"start": 2, "min_spare": 2, "max_spare": 3,
                        "max": 20}, client_timeout_s=60)
    d.start()
    wait_for(lambda: len(d.workers()) >= 2)
    socks = _slow_conns(d, 12)
    try:
        # Every slow connection holds a worker; the pool grows to serve
        # them and still keeps spare workers for new clients.
        wait_for(lambda: len(d.workers()) >= 14, timeout=15,
                 what="the pool to grow")
        st, _, _ = d.request("GET", "/healthz")
        assert st == 200
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: len(d.workers()) <= 3 + 1, timeout=20,
             what="the pool to shrink")
    assert d.stop() == 0


def test_pool_never_exceeds_max():
    d = Daemon(workers={"start": 1, "min_spare": 2, "max_spare": 3,
                        "max": 4}, client_timeout_s=60, persist_interval_s=1)
    d.start()
    socks = _slow_conns(d, 8)
    try:
        wait_for(lambda: len(d.workers()) >= 4, timeout=15)
        # Every worker busy, none spare: each maintenance tick wants more.
        d.wait_ticks(2)
        assert len(d.workers()) == 4
    finally:
        for s in socks:
            s.close()
    assert d.stop() == 0


def test_reload_good_config():
    d = Daemon()
    d.start()
    old = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    d.cfg["priority_keys"] = lib.KEYS[:1]
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log("reloaded: generation 2")
    assert d.read_pid() == d.master
    wait_for(lambda: not any(w in d.workers() for w in old),
             what="old workers to be replaced")
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200
    assert d.stop() == 0


def test_reload_broken_config_keeps_running():
    d = Daemon()
    d.start()
    old = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    d.write_config(raw="{ this is not json")
    d.signal(signal.SIGHUP)
    d.wait_log("reload failed, keeping the running config")
    assert "JSON syntax error" in d.log()
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200
    assert d.workers() == old
    assert alive(d.master)
    assert d.stop() == 0


def test_reload_changes_listen():
    d = Daemon()
    d.start()
    newport = lib.free_port()
    d.cfg["listen"] = "127.0.0.1:%d" % newport
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log("now listening on")
    d.port = newport
    wait_for(lambda: d.request("GET", "/healthz")[0] == 200)
    assert d.stop() == 0


def _read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        rest += s.recv(4096)
    return head, rest


def test_sigterm_lets_request_in_flight_finish():
    d = Daemon()
    d.start()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    # A first request proves a worker holds this connection ...
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _ = _read_response(s)
    assert head.startswith(b"HTTP/1.1 200")
    # ... and the second is in flight when the stop comes.
    s.sendall(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n12345")
    d.signal(signal.SIGTERM)
    d.wait_log("stopping")
    assert alive(d.master)
    s.sendall(b"67890")
    head, _ = _read_response(s)
    assert head.startswith(b"HTTP/1.1 502"), head
    assert b"Connection: close" in head
    s.close()
    assert d.wait_exit() == 0
    assert not os.path.exists(d.pidfile)


def test_sigterm_gives_up_after_timeout():
    d = Daemon(shutdown_timeout_s=1, client_timeout_s=60)
    d.start()
    ws = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n12345")
    # A worker has the request, half its body read, when the stop comes.
    wait_for(lambda: lib.taken(d.port, s), what="a worker to read the head")
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=10) == 0
    s.close()
    assert "1 workers still busy after 1 s, killing them" in d.log(), \
        d.log()
    for w in ws:
        wait_for(lambda: not alive(w), timeout=10)


def test_usr1_reopens_log():
    d = Daemon()
    d.start()
    os.rename(d.logfile, d.logfile + ".1")
    d.signal(signal.SIGUSR1)
    d.wait_log("log file reopened")
    assert d.stop() == 0


def test_access_log_hides_key():
    d = Daemon()
    d.start()
    d.request("GET", "/nothing?key=AIzaSECRETSECRETSECRET&x=1")
    d.wait_log("path=/nothing?key=-&x=1")
    assert "SECRETSECRET" not in d.log()
    assert d.stop() == 0
