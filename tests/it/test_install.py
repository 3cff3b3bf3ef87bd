"""Running gemini-looper like a Unix daemon: make install/uninstall into a
temporary DESTDIR, the SysV init script driven from there as root (start,
status, reload, rotate, restart, stop), the logrotate snippet, the systemd
unit (systemd-analyze verify, where there is one), the man page (mandoc
-T lint), and the workers' privilege drop read from /proc/<pid>/status.

Nothing here touches the real /etc, /run or /var: the init script reads its
paths from a defaults file named by $GEMINI_LOOPER_DEFAULTS, and the
logrotate snippet and the unit are checked on copies pointed at temporary
directories.  A check whose tool is missing says "skipped" and passes.
"""
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import lib
from lib import Daemon, alive, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = "gemini-looper"
NOBODY = pwd.getpwnam("nobody")

# What make install puts where, relative to DESTDIR, by PREFIX.
FILES = {
    "/usr": {
        "usr/sbin/gemini-looper": 0o755,
        "usr/share/man/man8/gemini-looper.8": 0o644,
        "etc/init.d/gemini-looper": 0o755,
        "usr/lib/systemd/system/gemini-looper.service": 0o644,
        "etc/logrotate.d/gemini-looper": 0o644,
        "usr/share/doc/gemini-looper/README.md": 0o644,
        "usr/share/doc/gemini-looper/config.example.json": 0o644,
    },
    "/usr/local": {
        "usr/local/sbin/gemini-looper": 0o755,
        "usr/local/share/man/man8/gemini-looper.8": 0o644,
        "etc/init.d/gemini-looper": 0o755,
        "usr/local/lib/systemd/system/gemini-looper.service": 0o644,
        "etc/logrotate.d/gemini-looper": 0o644,
        "usr/local/share/doc/gemini-looper/README.md": 0o644,
        "usr/local/share/doc/gemini-looper/config.example.json": 0o644,
    },
}


def skipped(why):
    print("  skipped: " + why, flush=True)


def is_root():
    return os.geteuid() == 0


def make(*args):
    """Run make in the repository, without the outer make's jobserver."""
    env = dict(os.environ)
    for v in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BINDIR",
              "MANDIR", "DOCDIR", "SYSCONFDIR", "INITDIR", "UNITDIR",
              "LOGROTATEDIR", "DESTDIR", "PREFIX"):
        env.pop(v, None)
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT] +
                       list(args), capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, "make %s: %s%s" % (" ".join(args), r.stdout,
                                                 r.stderr)
    return r


def install(prefix="/usr"):
    """make install into a fresh DESTDIR; returns it."""
    dest = tempfile.mkdtemp(prefix="gl-destdir-")
    lib._cleanups.append(lambda: shutil.rmtree(dest, True))
    make("install", "DESTDIR=" + dest, "PREFIX=" + prefix)
    return dest


def files_under(top):
    out = set()
    for d, _, names in os.walk(top):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), top))
    return out


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def pids_of_exe(exe):
    """Live processes running the binary exe."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % d) == exe and alive(int(d)):
                out.append(int(d))
        except OSError:
            pass
    return out


# make install / uninstall

def test_install_puts_every_file_and_uninstall_removes_them():
    for prefix, want in sorted(FILES.items()):
        dest = install(prefix)
        assert files_under(dest) == set(want), \
            (prefix, sorted(files_under(dest) ^ set(want)))
        for rel, mode in want.items():
            st = os.stat(os.path.join(dest, rel))
            assert stat.S_IMODE(st.st_mode) == mode, (rel, oct(st.st_mode))
        bindir = prefix + "/sbin"
        init = open(os.path.join(dest, "etc/init.d", PROG)).read()
        assert "\nDAEMON=%s/%s\n" % (bindir, PROG) in init, init[:1500]
        unit = open(os.path.join(dest, prefix.lstrip("/"),
                                 "lib/systemd/system", PROG + ".service")
                    ).read()
        execs = [l for l in unit.splitlines()
                 if l.startswith(("ExecStart", "ExecReload"))]
        assert len(execs) == 4, execs
        for l in execs:
            if "kill" not in l:
                assert l.split("=", 1)[1].startswith(
                    "%s/%s " % (bindir, PROG)), l
        if prefix != "/usr/local":
            assert "/usr/local/" not in init and "/usr/local/" not in unit
        # The installed binary is the one built.
        r = subprocess.run([os.path.join(dest, bindir.lstrip("/"), PROG),
                            "-V"], capture_output=True, text=True)
        assert r.returncode == 0 and PROG in r.stdout

        # Files that are not ours survive uninstall; ours all go.
        others = [os.path.join(dest, "etc/init.d/other"),
                  os.path.join(dest, bindir.lstrip("/"), "other")]
        for o in others:
            open(o, "w").close()
        make("uninstall", "DESTDIR=" + dest, "PREFIX=" + prefix)
        left = files_under(dest)
        assert left == {os.path.relpath(o, dest) for o in others}, left
        assert not os.path.exists(os.path.join(
            dest, prefix.lstrip("/"), "share/doc", PROG))


def test_example_config_is_valid():
    r = subprocess.run([lib.BIN, "-t", "-c",
                        os.path.join(ROOT, "contrib/config.example.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    # Every field the README's table lists is in the example.
    cfg = json.load(open(os.path.join(ROOT, "contrib/config.example.json")))
    readme = open(os.path.join(ROOT, "README.md")).read()
    table = readme[readme.index("| field | default | meaning |"):]
    table = table[:table.index("\n\n")]
    for line in table.splitlines()[2:]:
        for name in line.split("|")[1].replace("`", "").split(","):
            name = name.strip()
            if name in ("rpm_limit", "rpd_limit", "tpm_limit", "tpd_limit"):
                continue
            assert name in cfg, "example config lacks " + name


# The man page

def test_man_page_lints_clean():
    page = os.path.join(ROOT, "contrib", PROG + ".8")
    if shutil.which("mandoc") is None:
        skipped("mandoc is not installed (make deps)")
        return
    # Warnings and worse: none at all.
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
        r.stdout + r.stderr
    # Style too, except cross-references to pages this machine lacks
    # (mandoc looks them up in the installed manuals).
    r = subprocess.run(["mandoc", "-T", "lint", page], capture_output=True,
                       text=True)
    lines = [l for l in (r.stdout + r.stderr).splitlines()
             if "mandoc.db" not in l and "Xr to nonexistent" not in l]
    assert not lines, "\n".join(lines)
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-ww", "-mandoc", "-Tutf8", page],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
    # Every config field is documented.
    text = open(page).read()
    for f in ("priority_keys", "secondary_keys", "models", "default_model",
              "reset_after", "next_quota_reset_datetime", "timezone",
              "listen", "upstream", "upstream_ca_file", "workers",
              "access_tokens", "admin_token", "usage_file", "pidfile",
              "log_file", "log_level", "user", "max_body_bytes",
              "max_wait_s", "persist_interval_s", "shutdown_timeout_s",
              "client_timeout_s", "keepalive_timeout_s",
              "upstream_timeout_s"):
        assert ".It Ic " + f in text or ", " + f in text, f


# The SysV init script

class InitScript:
    """The installed init script, its paths in a defaults file of d's."""

    def __init__(self, d, dest):
        self.d = d
        self.script = os.path.join(dest, "etc/init.d", PROG)
        self.daemon = os.path.join(dest, "usr/sbin", PROG)
        self.defaults = os.path.join(d.dir, "defaults")
        with open(self.defaults, "w") as f:
            f.write("DAEMON=%s\nCONF=%s\nPIDFILE=%s\nSTATEDIR=%s\n"
                    "LOGDIR=%s\nSTOP_TIMEOUT=20\n" %
                    (self.daemon, d.config_path, d.pidfile,
                     os.path.join(d.dir, "state"),
                     os.path.join(d.dir, "logs")))

    def __call__(self, action):
        """Run the script with action; returns CompletedProcess.

        The runner is a child subreaper, so the daemon's master is our
        child and, once it exits, our zombie: start-stop-daemon would see
        it alive until its timeout.  Reap it while the script runs, the
        way init would."""
        env = dict(os.environ)
        env["GEMINI_LOOPER_DEFAULTS"] = self.defaults
        env["SYSTEMCTL_SKIP_REDIRECT"] = "1"
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        with tempfile.TemporaryFile("w+") as out, \
                tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen([self.script, action], stdout=out,
                                 stderr=err, text=True, env=env,
                                 stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 90
            while p.poll() is None:
                reap_zombies(p.pid)
                if time.monotonic() > deadline:
                    p.kill()
                    raise AssertionError("init script %s hangs" % action)
                time.sleep(0.02)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode,
                                               out.read(), err.read())


def reap_zombies(keep):
    """Reap our zombie children, except keep."""
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == keep:
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(d), os.WNOHANG)
            except ChildProcessError:
                pass


def _init_ready():
    if not is_root():
        skipped("the init script is driven as root")
        return False
    if shutil.which("start-stop-daemon", path="/usr/sbin:/sbin") is None:
        raise AssertionError("start-stop-daemon missing: make deps")
    return True


def test_init_script_lifecycle():
    if not _init_ready():
        return
    dest = install("/usr")
    d = Daemon()
    init = InitScript(d, dest)

    r = init("start")
    assert r.returncode == 0, r.stdout + r.stderr
    d.master = d.read_pid()
    assert os.readlink("/proc/%d/exe" % d.master) == init.daemon
    assert os.path.isdir(os.path.join(d.dir, "state"))
    assert os.path.isdir(os.path.join(d.dir, "logs"))
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200

    r = init("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is running" in r.stdout, r.stdout

    # start again: already running, nothing changes.
    r = init("start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.read_pid() == d.master

    # reload with other keys: -t first, then HUP; the pid stays.
    d.cfg["priority_keys"] = lib.KEYS[:1]
    d.write_config()
    r = init("reload")
    assert r.returncode == 0, r.stdout + r.stderr
    d.wait_log("reloaded: generation 2")
    log = d.log()
    assert "reloaded: generation 2: 2 keys" in log, log
    assert d.read_pid() == d.master

    # A bad config is caught by -t: no HUP is sent at all.
    d.cfg["reset_after"] = "25:00"
    d.write_config()
    r = init("reload")
    assert r.returncode != 0
    assert "reset_after" in r.stderr, r.stderr
    r = init("restart")
    assert r.returncode != 0 and "reset_after" in r.stderr, r.stderr
    assert alive(d.master) and d.read_pid() == d.master
    d.cfg["reset_after"] = "00:00"
    d.write_config()

    # rotate: the log moved away, USR1, a new file with the line.
    os.rename(d.logfile, d.logfile + ".1")
    r = init("rotate")
    assert r.returncode == 0, r.stdout + r.stderr
    d.wait_log("log file reopened")
    # The master handles signals in order: a HUP from the refused reload
    # above would have been handled before this USR1.  Only one was.
    old_log = open(d.logfile + ".1").read()
    assert (old_log + d.log()).count("reloading ") == 1, old_log
    # The workers reopened it too: their access lines land in it.
    wait_for(lambda: _healthz_logged(d), what="an access line in the "
             "new log file")
    assert "log file reopened" not in open(d.logfile + ".1").read()

    # restart: a new master, serving.
    old = d.master
    r = init("restart")
    assert r.returncode == 0, r.stdout + r.stderr
    d.master = d.read_pid()
    assert d.master != old and not alive(old)
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200

    # stop: pidfile gone, no process of ours left.
    workers = wait_for(lambda: len(d.workers()) >= 2 and d.workers())
    r = init("stop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(d.pidfile)
    assert not alive(d.master)
    for w in workers:
        assert not alive(w), w
    assert pids_of_exe(init.daemon) == []
    assert "stopped" in d.log()

    r = init("status")
    assert r.returncode == 3, (r.returncode, r.stdout + r.stderr)
    assert "not running" in r.stdout, r.stdout
    r = init("stop")
    assert r.returncode == 0, r.stdout + r.stderr
    r = init("rotate")
    assert r.returncode != 0

    # start with a bad config: refused before anything runs.
    d.cfg["user"] = "no-such-user-gl"
    d.write_config()
    r = init("start")
    assert r.returncode != 0
    assert 'user: no such user "no-such-user-gl"' in r.stderr, r.stderr
    assert not os.path.exists(d.pidfile)
    assert pids_of_exe(init.daemon) == []


def _healthz_logged(d):
    d.request("GET", "/healthz")
    try:
        with open(d.logfile) as f:
            return "path=/healthz status=200" in f.read()
    except FileNotFoundError:
        return False


def test_logrotate_snippet_rotates_and_reopens():
    if not is_root():
        skipped("logrotate runs as root")
        return
    if shutil.which("logrotate", path="/usr/sbin:/sbin:/usr/bin") is None:
        skipped("logrotate is not installed (make deps)")
        return
    dest = install("/usr")
    d = Daemon(log_file="logs/gemini-looper.log")
    os.mkdir(os.path.join(d.dir, "logs"))
    d.logfile = os.path.join(d.dir, "logs/gemini-looper.log")
    snippet = open(os.path.join(dest, "etc/logrotate.d", PROG)).read()
    assert "/var/log/gemini-looper/*.log" in snippet
    assert "/run/gemini-looper.pid" in snippet
    conf = os.path.join(d.dir, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(snippet.replace("/var/log/gemini-looper/",
                                os.path.join(d.dir, "logs") + "/")
                .replace("/run/gemini-looper.pid", d.pidfile))
    d.start()
    d.wait_log(" started: master pid ")
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    r = subprocess.run(["logrotate", "-f", "-s",
                        os.path.join(d.dir, "logrotate.state"), conf],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(d.logfile + ".1")
    d.wait_log("log file reopened")
    wait_for(lambda: _healthz_logged(d), what="an access line in the new "
             "log file")
    assert d.stop() == 0


# The systemd unit

def test_systemd_unit_verifies():
    dest = install("/usr")
    unit = open(os.path.join(dest, "usr/lib/systemd/system",
                             PROG + ".service")).read()
    kv = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            kv.setdefault(k, []).append(v)
    assert kv["Type"] == ["forking"]
    pidfile = kv["PIDFile"][0]
    assert kv["ExecStart"][0].endswith("-p " + pidfile), kv["ExecStart"]
    assert " -t " in kv["ExecStartPre"][0]
    assert " -t " in kv["ExecReload"][0]
    assert kv["ExecReload"][1] == "/bin/kill -HUP $MAINPID"
    assert kv["KillMode"] == ["mixed"]
    assert kv["Restart"] == ["on-failure"]
    assert kv["NoNewPrivileges"] == ["yes"]
    assert kv["ProtectSystem"] == ["strict"]
    assert kv["RuntimeDirectory"] == ["gemini-looper"]
    assert pidfile.startswith("/run/gemini-looper/")
    assert kv["StateDirectory"] == ["gemini-looper"]
    assert kv["PrivateTmp"] == ["yes"] and kv["ProtectHome"] == ["yes"]

    if shutil.which("systemd-analyze") is None:
        skipped("systemd-analyze is not installed")
        return
    # verify wants the commands to exist: point them at the DESTDIR copy.
    tmp = tempfile.mkdtemp(prefix="gl-unit-")
    lib._cleanups.append(lambda: shutil.rmtree(tmp, True))
    path = os.path.join(tmp, PROG + ".service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/sbin/" + PROG,
                             os.path.join(dest, "usr/sbin", PROG)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", out


# Privilege drop

def run_daemon(d):
    """Start d expecting a failure; if it started anyway, the cleanup
    stops it."""
    r = d.run("-c", d.config_path)
    if os.path.exists(d.pidfile):
        d.master = d.read_pid()
    return r


def _ids(pid):
    s = proc_status(pid)
    return ([int(x) for x in s["Uid"]], [int(x) for x in s["Gid"]],
            [int(x) for x in s.get("Groups", [])], int(s["NoNewPrivs"][0]))


def started_workers(d, n=2):
    """The master's children, once at least n of them and all of them are
    workers that finished starting (they set their title after dropping
    privileges; a child fresh from fork() is still titled master)."""
    def ready():
        ws = d.workers()
        if len(ws) >= n and all(" worker" in lib.cmdline(w) for w in ws):
            return ws
        return None
    return wait_for(ready, what="%d started workers" % n)


def _assert_dropped(pid):
    uid, gid, groups, nnp = _ids(pid)
    assert uid == [NOBODY.pw_uid] * 4, (pid, uid)
    assert gid == [NOBODY.pw_gid] * 4, (pid, gid)
    assert groups == [NOBODY.pw_gid], (pid, groups)
    assert nnp == 1, pid


def test_privdrop_workers_run_as_user():
    if not is_root():
        skipped("privilege drop needs root")
        return
    d = Daemon(user="nobody")
    # The workers reopen log_file after a rotation: let them reach it.
    os.chmod(d.dir, 0o755)
    d.start()
    ws = started_workers(d)
    for w in ws:
        _assert_dropped(w)
    uid, gid, _, nnp = _ids(d.master)
    assert uid == [0] * 4 and gid == [0] * 4 and nnp == 0
    st, _, body = d.request("GET", "/healthz")
    assert st == 200, body
    # The master's files stay root's; the log is handed to the user.
    assert os.stat(d.pidfile).st_uid == 0
    assert os.stat(d.logfile).st_uid == NOBODY.pw_uid

    # A replaced worker drops too.
    os.kill(ws[0], signal.SIGKILL)
    wait_for(lambda: ws[0] not in d.workers() and len(d.workers()) >= 2,
             what="a replacement worker")
    for w in started_workers(d):
        _assert_dropped(w)

    # rotate: the new file is given to the user and the workers write it.
    os.rename(d.logfile, d.logfile + ".1")
    d.signal(signal.SIGUSR1)
    d.wait_log("log file reopened")
    assert os.stat(d.logfile).st_uid == NOBODY.pw_uid
    wait_for(lambda: _healthz_logged(d), what="a worker's access line in "
             "the new log file")

    # A reload naming an unknown user keeps the running config.
    d.cfg["user"] = "no-such-user-gl"
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log('user: no such user "no-such-user-gl"')
    assert "reload failed" in d.log()

    # A good reload: the new generation drops as well.
    d.cfg["user"] = "nobody"
    d.cfg["priority_keys"] = lib.KEYS[:1]
    d.write_config()
    old = d.workers()
    d.signal(signal.SIGHUP)
    d.wait_log("reloaded: generation 2")
    wait_for(lambda: not set(old) & set(d.workers()) and
             len(d.workers()) >= 2, what="new workers")
    for w in started_workers(d):
        _assert_dropped(w)
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200
    assert d.stop() == 0
    assert not os.path.exists(d.pidfile)


def test_privdrop_unknown_user_is_a_config_error():
    d = Daemon(user="no-such-user-gl")
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'user: no such user "no-such-user-gl"' in r.stderr, r.stderr
    assert d.config_path in r.stderr or "config.json" in r.stderr
    r = run_daemon(d)
    assert r.returncode == 1
    assert "no such user" in r.stderr
    assert not os.path.exists(d.pidfile)

    d.cfg["user"] = "root"
    d.write_config()
    r = d.run("-t", "-c", d.config_path)
    assert r.returncode == 1 and "user: " in r.stderr, r.stderr


def test_privdrop_failure_stops_the_master():
    """A worker that cannot drop exits 71 and the master stops, instead
    of respawning it forever.  Here the daemon is root without
    CAP_SETUID/CAP_SETGID (as in a stingy container): setgroups fails."""
    if not is_root():
        skipped("privilege drop needs root")
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skipped("setpriv (util-linux) is not installed")
        return
    d = Daemon(user="nobody")
    t0 = time.monotonic()
    r = subprocess.run([setpriv, "--bounding-set=-setuid,-setgid",
                        "--inh-caps=-setuid,-setgid", lib.BIN, "-c",
                        d.config_path], capture_output=True, text=True,
                       timeout=30, cwd=d.dir)
    if os.path.exists(d.pidfile):
        d.master = d.read_pid()
    assert r.returncode == 1, r.stdout + r.stderr
    assert time.monotonic() - t0 < 15
    assert 'user "nobody": setgroups: Operation not permitted' in \
        r.stderr, r.stderr
    log = d.log()
    assert "cannot work (exit 71)" in log, log
    assert "workers die young" not in log, log
    assert not os.path.exists(d.pidfile)
    wait_for(lambda: pids_of_exe(lib.BIN) == [], timeout=5,
             what="no gemini-looper process left")


def test_privdrop_not_root_warns_and_runs_as_itself():
    if not is_root():
        skipped("needs root to become another user")
        return
    d = Daemon(user="daemon", log_file=None)
    os.chmod(d.dir, 0o755)
    os.chown(d.dir, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chown(d.config_path, NOBODY.pw_uid, NOBODY.pw_gid)
    # The build tree may be closed to other users (a clone in a 0700
    # directory): nobody runs a copy of the binary from its own directory.
    exe = os.path.join(d.dir, "gemini-looper")
    shutil.copy2(lib.BIN, exe)
    os.chmod(exe, 0o755)
    p = subprocess.Popen([exe, "-d", "-c", d.config_path], cwd=d.dir,
                         stderr=subprocess.PIPE, text=True,
                         user=NOBODY.pw_uid, group=NOBODY.pw_gid,
                         extra_groups=[])
    d.proc = p
    d.master = p.pid
    lines = []
    for line in p.stderr:
        lines.append(line)
        if " started: master pid " in line:
            break
    err = "".join(lines)
    assert " started: master pid " in err, err
    assert 'user "daemon" is set but' in err and "not started as root" \
        in err, err
    ws = started_workers(d)
    for w in ws + [p.pid]:
        uid, gid, _, _ = _ids(w)
        assert uid == [NOBODY.pw_uid] * 4, (w, uid)
    st, _, _ = d.request("GET", "/healthz")
    assert st == 200
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0


def test_privdrop_proxies_through_the_standin():
    """Dropped workers still reach the upstream over TLS; the CA file,
    read before the drop, may be readable by root only."""
    if not is_root():
        skipped("privilege drop needs root")
        return
    try:
        import standin
    except ImportError:
        skipped("no tests/it/standin.py")
        return
    si = standin.StandIn()
    d = standin.proxy_daemon(si, user="nobody", upstream_ca_file="ca.pem")
    shutil.copy(standin.ca_file(), os.path.join(d.dir, "ca.pem"))
    os.chmod(os.path.join(d.dir, "ca.pem"), 0o600)
    os.chmod(d.dir, 0o700)
    d.start()
    for w in started_workers(d):
        _assert_dropped(w)
    body = json.dumps({"contents": [{"role": "user",
                                     "parts": [{"text": "Hello"}]}]})
    st, _, raw = d.request(
        "POST", "/v1beta/models/gemini-2.5-flash:generateContent",
        body.encode(), {"Content-Type": "application/json"}, timeout=20)
    assert st == 200, raw
    assert b"candidates" in raw
    assert d.stop() == 0
