"""Helpers for the integration tests: start a real gemini-looper in a
temporary directory, talk HTTP to it, watch its processes.

The test runner makes itself a child subreaper, so a daemonized master
becomes our child: we can waitpid() it and read its exit status, and no
zombie outlives a test.
"""
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = None          # the daemon built with the sanitizers
PLAIN_BIN = None    # the one built without (for memory measurements)
_cleanups = []

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

KEYS = ["AIzaSyTestKeyNumberOne000000000000000001",
        "AIzaSyTestKeyNumberTwo000000000000000002",
        "AIzaSyTestKeyNumberThree00000000000000003"]


def cleanup():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass


def free_port():
    """A port nobody listens on now.  Racy (another process may take it
    before it is bound): only for a test that must name a port before
    binding it.  The daemon and the stand-in bind port 0 and say which
    port they got (the daemon's "listening on" log line, the stand-in's
    READY line)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout=10.0, what="condition"):
    """Poll cond() until it is true; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def taken(port, sock):
    """True once the server on 127.0.0.1:port has accepted the connection
    whose client end is sock, and read all that was sent on it: its end
    has a file (a connection still in the accept queue has none, inode 0)
    and nothing waits in its receive queue."""
    me = "0100007F:%04X" % sock.getsockname()[1]
    srv = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == srv and fields[2] == me:
                return (int(fields[4].split(":")[1], 16) == 0 and
                        fields[9] != "0")
    return False


def listening_port(pid):
    """The TCP port process pid listens on (its listening socket found by
    inode in /proc/net/tcp and tcp6), or None."""
    inodes = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    for fd in fds:
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    return int(fields[1].rsplit(":", 1)[1], 16)
    return None


def alive(pid):
    """True while pid exists and is not a zombie (reaping it if it is)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


class Daemon:
    def __init__(self, bin=None, **overrides):
        self.bin = bin or BIN
        self.wrap = []      # a command that runs the binary (unshare ...)
        self.dir = tempfile.mkdtemp(prefix="gl-it-")
        _cleanups.append(lambda: shutil.rmtree(self.dir, True))
        self._port = None   # (master pid, port): see port
        self.config_path = os.path.join(self.dir, "config.json")
        self.pidfile = os.path.join(self.dir, "gemini-looper.pid")
        self.logfile = os.path.join(self.dir, "daemon.log")
        self.cfg = {
            "priority_keys": KEYS[:2],
            "secondary_keys": KEYS[2:],
            "models": {
                "gemini-2.5-pro": {"tpm_limit": 250000, "tpd_limit": None},
                "gemini-2.5-flash": {"tpm_limit": 250000,
                                     "tpd_limit": None},
            },
            "reset_after": "00:00",
            "timezone": "UTC",
            "default_model": "gemini-2.5-flash",
            "listen": "127.0.0.1:0",
            "upstream": "https://127.0.0.1:9",
            "pidfile": "gemini-looper.pid",
            "usage_file": "key_usage.json",
            "log_file": "daemon.log",
            "workers": {"start": 2, "min_spare": 1, "max_spare": 3,
                        "max": 16},
            "shutdown_timeout_s": 10,
        }
        self.cfg.update(overrides)
        self.write_config()
        self.proc = None
        self.master = None
        _cleanups.append(self.kill)

    def write_config(self, cfg=None, raw=None):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            if raw is not None:
                f.write(raw)
            else:
                json.dump(cfg if cfg is not None else self.cfg, f, indent=2)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.config_path)

    def run(self, *args, timeout=30):
        """Run the binary with args; returns CompletedProcess."""
        return subprocess.run(self.wrap + [self.bin] + list(args),
                              capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)

    @property
    def port(self):
        """The port the running master listens on: the config's listen
        has port 0, so the system chose it.  Looked up (and remembered)
        per master pid, so a restart by any means is followed."""
        if self.master and (self._port is None or
                            self._port[0] != self.master):
            pid = self.master
            self._port = (pid, wait_for(lambda: listening_port(pid), 10,
                                        "the daemon's listening port"))
        return self._port[1] if self._port else None

    @port.setter
    def port(self, value):
        self._port = (self.master, value)

    def start(self, *extra):
        """Start daemonized; returns once the parent exited (ready), its
        port known."""
        r = self.run("-c", self.config_path, *extra)
        if r.returncode != 0:
            raise AssertionError("start failed (%d): %s %s" %
                                 (r.returncode, r.stdout, r.stderr))
        self.master = self.read_pid()
        return r

    def start_fg(self, *extra):
        """Start in the foreground (-d); wait for the 'started' log line."""
        self.proc = subprocess.Popen(
            [self.bin, "-d", "-c", self.config_path] + list(extra),
            cwd=self.dir, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if " started: master pid " in line:
                break
        else:
            raise AssertionError("daemon did not start: " +
                                 "".join(self.stderr_lines))
        self.master = self.proc.pid
        return self.proc

    def read_pid(self):
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def workers(self):
        """The master's children but the prober (issue 12), which titles
        itself first thing after its fork."""
        return [p for p in children_of(self.master)
                if "prober" not in cmdline(p)]

    def prober(self):
        """The prober's pid, or None."""
        ps = [p for p in children_of(self.master) if "prober" in cmdline(p)]
        return ps[0] if ps else None

    def log(self):
        try:
            with open(self.logfile) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=10):
        return wait_for(lambda: text in self.log(), timeout,
                        "log line %r" % text)

    def signal(self, sig):
        os.kill(self.master, sig)

    def wait_ticks(self, n=2, timeout=20):
        """Return once the master has run its once-a-second tick (pool
        maintenance, reset, usage file) n times from now.  Needs
        persist_interval_s 1: each tick then writes the usage file anew
        when it is gone."""
        assert self.cfg.get("persist_interval_s") == 1, "persist_interval_s"
        path = os.path.join(self.dir, self.cfg["usage_file"])
        for i in range(n):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            wait_for(lambda: os.path.exists(path), timeout,
                     "master tick %d of %d" % (i + 1, n))

    def wait_exit(self, timeout=30):
        """Wait for the master to exit; returns its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, st = os.waitpid(self.master, os.WNOHANG)
            except ChildProcessError:
                if not alive(self.master):
                    return None
                pid = 0
            if pid == self.master:
                return os.waitstatus_to_exitcode(st)
            time.sleep(0.02)
        raise AssertionError("master %d did not exit" % self.master)

    def stop(self):
        self.signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self):
        if not self.master:
            # A start that failed or hung may still have left a master.
            try:
                self.master = self.read_pid()
            except (OSError, ValueError):
                return
        if self.master and alive(self.master):
            kids = self.workers()
            try:
                os.kill(self.master, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(self.master, 0)
            except ChildProcessError:
                pass

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), data
        finally:
            c.close()

    def raw(self, data, timeout=5, shut=True):
        """Send raw bytes, return everything the daemon answers."""
        s = socket.create_connection(("127.0.0.1", self.port),
                                     timeout=timeout)
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                out += b
            return out
        finally:
            s.close()
