"""The stand-in Gemini server (tests/standin/gemini_standin.py) for the
integration tests, and a Daemon whose upstream is that stand-in.

    si = StandIn()                      # default config: the keys below
    d = proxy_daemon(si)                # priority [K1, K2], secondary [K3]
    d.start()
    ... si.log(), si.config({...}), si.reset(), si.request(...) ...

The test CA is made once per run (tests/mkca.sh into a temporary directory
that is removed at exit). Every StandIn registers its stop in lib._cleanups,
so the runner stops it after each test.
"""
import atexit
import copy
import ctypes
import http.client
import importlib.util
import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STANDIN_PY = os.path.join(ROOT, "tests", "standin", "gemini_standin.py")
MKCA = os.path.join(ROOT, "tests", "mkca.sh")

# The stand-in's own formatting functions (pretty, oneline, compact), so that
# tests can check that the proxy relays bodies byte for byte.
_spec = importlib.util.spec_from_file_location("gemini_standin", STANDIN_PY)
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)

# Pool keys, one Google project each (limits are per project). The last four
# characters differ, so that the masked forms ("AIza…k001") tell them apart.
K1 = "AIzaSyLooperIT-project-one-key-0000k001"
K2 = "AIzaSyLooperIT-project-two-key-0000k002"
K3 = "AIzaSyLooperIT-project-three-key-00k003"
# Keys the stand-in rejects.
KINV = "AIzaSyLooperIT-invalid-key-000000000kinv"
KSUS = "AIzaSyLooperIT-suspended-key-0000000ksus"
KBLK = "AIzaSyLooperIT-blocked-key-000000000kblk"
KLEAK = "AQ.Ab8RN6LooperIT-leaked-key-0000000klea"   # the newer key format
# Keys for /api/test_key (not in any pool).
KT_OK = "AIzaSyLooperIT-tested-valid-key-000kt01"
KT_QUOTA = "AIzaSyLooperIT-tested-no-quota-key-kt02"
KT_UNKNOWN = "AIzaSyLooperIT-tested-unknown-key-0kt03"

POOL_KEYS = [K1, K2, K3]
BAD_KEYS = [KINV, KSUS, KBLK, KLEAK]
TEST_KEYS = [KT_OK, KT_QUOTA, KT_UNKNOWN]
ALL_KEYS = POOL_KEYS + BAD_KEYS + TEST_KEYS

PROJECT = {K1: "p1", K2: "p2", K3: "p3", KINV: "pinv", KSUS: "psus",
           KBLK: "pblk", KLEAK: "pleak", KT_OK: "pt1", KT_QUOTA: "pt2"}

DEFAULT_CONFIG = {
    "keys": {
        K1: {"project": "p1"},
        K2: {"project": "p2"},
        K3: {"project": "p3"},
        KINV: {"project": "pinv", "state": "invalid"},
        KSUS: {"project": "psus", "state": "suspended"},
        KBLK: {"project": "pblk", "state": "blocked"},
        KLEAK: {"project": "pleak", "state": "leaked"},
        KT_OK: {"project": "pt1"},
        KT_QUOTA: {"project": "pt2"},
        # KT_UNKNOWN is deliberately not listed: 400 API_KEY_INVALID.
    },
    "quotas": {},
    "projects": {
        # A project with no quota left for anything: every request 429s.
        "pt2": {"quotas": {"*": {"rpm": 0}}},
    },
}

FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"

DEFAULT_MODELS = {
    FLASH: {"tpm_limit": 1000000, "tpd_limit": None},
    PRO: {"tpm_limit": 1000000, "tpd_limit": None},
}

_ca = None
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child: a stand-in never outlives the tests that started it."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def ca_dir():
    """The test CA and certificates, made once per run."""
    global _ca
    if _ca is None:
        d = tempfile.mkdtemp(prefix="gl-ca-")
        atexit.register(shutil.rmtree, d, True)
        subprocess.run(["sh", MKCA, d], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)
        _ca = d
    return _ca


def ca_file():
    return os.path.join(ca_dir(), "ca.pem")


def mask(key):
    """The contract's masked form: first 4, an ellipsis, last 4."""
    return key[:4] + "\u2026" + key[-4:]


class StandIn:
    """One stand-in server process on an ephemeral port.

    cert: "server" (valid for localhost), "bad-server" (signed by another
    CA) or "wronghost" (valid for example.invalid only)."""

    def __init__(self, config=None, cert="server", merge_default=True):
        cfg = copy.deepcopy(DEFAULT_CONFIG) if merge_default else {}
        for k, v in (config or {}).items():
            if k in ("keys", "quotas", "projects") and isinstance(v, dict):
                cfg.setdefault(k, {}).update(v)
            else:
                cfg[k] = v
        self.dir = tempfile.mkdtemp(prefix="gl-standin-")
        lib._cleanups.append(lambda: shutil.rmtree(self.dir, True))
        cfgpath = os.path.join(self.dir, "standin.json")
        with open(cfgpath, "w") as f:
            json.dump(cfg, f)
        cdir = ca_dir()
        self.errpath = os.path.join(self.dir, "stderr")
        self._err = open(self.errpath, "w")
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN_PY,
             "--cert", os.path.join(cdir, cert + ".pem"),
             "--key", os.path.join(cdir, cert + ".key"),
             "--host", "127.0.0.1", "--port", "0", "--config", cfgpath],
            stdout=subprocess.PIPE, stderr=self._err, cwd=self.dir,
            preexec_fn=_die_with_parent)
        lib._cleanups.append(self.stop)
        line = self._readline(15.0)
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError("stand-in did not start: %r %s" %
                                 (line, self.stderr()))
        self.port = int(line.split()[1])
        self.url = "https://localhost:%d" % self.port
        self.ctx = ssl.create_default_context(cafile=ca_file())
        if cert != "server":
            # A certificate the proxy must refuse; the tests' own admin
            # requests still need to get through.
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            b = os.read(fd, 4096)
            if not b:
                break
            buf += b
        return buf.decode(errors="replace").strip()

    def stderr(self):
        try:
            with open(self.errpath) as f:
                return f.read()
        except OSError:
            return ""

    # -- talking to it directly (admin endpoints, or as a client) ----------
    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers dict, body bytes), straight to the stand-in."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        c = http.client.HTTPSConnection("localhost", self.port,
                                        context=self.ctx, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def _admin(self, method, path, body=None):
        st, _, data = self.request(method, path, body)
        if st != 200:
            raise AssertionError("stand-in %s %s: %d %r" %
                                 (method, path, st, data[:200]))
        return json.loads(data)

    def log(self, since=0):
        """Served requests, in order (list of dicts; see the stand-in)."""
        return self._admin("GET", "/__standin/log?since=%d" % since)

    def last_seq(self):
        log = self.log()
        return log[-1]["seq"] if log else 0

    def config(self, patch):
        """Merge patch into the stand-in's config; returns the new config."""
        return self._admin("POST", "/__standin/config", patch)

    def reset(self):
        return self._admin("POST", "/__standin/reset", {})

    def reset_minute(self):
        return self._admin("POST", "/__standin/reset_minute", {})

    def usage(self):
        return self._admin("GET", "/__standin/usage")

    def probes(self):
        """Key probes seen: by_key, by_second, max_per_second, total."""
        return self._admin("GET", "/__standin/probes")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            self.proc.stdout.close()
        except OSError:
            pass
        try:
            self._err.close()
        except OSError:
            pass


def proxy_daemon(si, priority=None, secondary=None, models=None,
                 **overrides):
    """A lib.Daemon (not started) whose upstream is the stand-in si."""
    cfg = {
        "priority_keys": list(priority if priority is not None
                              else [K1, K2]),
        "secondary_keys": list(secondary if secondary is not None
                               else [K3]),
        "models": copy.deepcopy(models if models is not None
                                else DEFAULT_MODELS),
        "default_model": FLASH,
        "upstream": "https://localhost:%d" % si.port,
        "upstream_ca_file": ca_file(),
    }
    cfg.update(overrides)
    d = lib.Daemon(**cfg)
    d.standin = si
    return d
