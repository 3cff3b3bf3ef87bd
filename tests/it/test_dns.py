"""The upstream's name lookup (issue 10 §8): bounded by upstream_timeout_s,
kept resolver_valid_s, refreshed in the background.

The daemon runs in a mount namespace of its own (unshare -m) where
/etc/resolv.conf names a DNS server of this test's, on a loopback address
of its own: one that answers gemini-looper.test (the stand-in's certificate
holds that name) with 127.0.0.1, or one that never answers.  Needs root;
skipped otherwise.
"""
import os
import random
import socket
import struct
import subprocess
import threading
import time

import lib
from lib import wait_for
from standin import FLASH, K1, StandIn, proxy_daemon
from test_proxy import err_of, gen

NAME = "gemini-looper.test"


class FakeDNS:
    """A DNS server on UDP port 53 of a loopback address: answers A
    queries for NAME with 127.0.0.1 (no AAAA), or, blackhole, nothing."""

    def __init__(self):
        self.addr = "127.53.%d.%d" % (random.randint(0, 255),
                                      random.randint(1, 254))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.addr, 53))
        self.sock.settimeout(0.2)
        self.blackhole = False
        self.queries = []       # (name, qtype)
        self.stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()
        lib._cleanups.append(self.close)

    def count(self, qtype=1):
        return sum(1 for n, t in self.queries if n == NAME and t == qtype)

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()

    def _serve(self):
        while not self.stop:
            try:
                q, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._answer(q, peer)
            except (IndexError, struct.error):
                pass

    def _answer(self, q, peer):
        tid, flags, qd = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if self.blackhole:
            return
        rcode, answers = 0, b""
        if name != NAME:
            rcode = 3       # NXDOMAIN
        elif qtype == 1:
            answers = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) +
                       socket.inet_aton("127.0.0.1"))
        head = struct.pack("!HHHHHH", tid, 0x8180 | rcode, 1,
                           1 if answers else 0, 0, 0)
        self.sock.sendto(head + question + answers, peer)


def _namespace_ok():
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return r.returncode == 0


def _daemon(si, dns, **over):
    """A daemon (one worker: one cache) whose resolver is dns."""
    d = proxy_daemon(si, priority=[K1], secondary=[],
                     upstream="https://%s:%d" % (NAME, si.port),
                     workers=1, **over)
    conf = os.path.join(d.dir, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver %s\noptions timeout:5 attempts:2\n" % dns.addr)
    # The namespace's /etc/resolv.conf is ours; the rest is the host's.
    d.wrap = ["unshare", "-m", "sh", "-c",
              'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf]
    return d


def _skip():
    print("    skipped: needs root and unshare -m")


def test_dns_answer_kept_and_refreshed_in_the_background():
    if not _namespace_ok():
        return _skip()
    dns = FakeDNS()
    si = StandIn()
    d = _daemon(si, dns, resolver_valid_s=1)
    d.start()
    # Each answer ends its connection: every request connects anew.
    for i in range(3):
        st, _, raw = gen(d, FLASH, "hello %d STANDIN:close=1" % i)
        assert st == 200, (st, raw[:300])
    assert dns.count() == 1, dns.queries
    time.sleep(1.2)     # the answer is now older than resolver_valid_s
    dns.blackhole = True
    t0 = time.monotonic()
    st, _, raw = gen(d, FLASH, "on the old addresses STANDIN:close=1")
    took = time.monotonic() - t0
    assert st == 200, (st, raw[:300])
    assert took < 1, took
    # ... while a new lookup went out in the background.
    wait_for(lambda: dns.count() >= 2, 5, "a second lookup")
    assert d.stop() == 0


def test_dns_lookup_bounded_by_upstream_timeout():
    if not _namespace_ok():
        return _skip()
    dns = FakeDNS()
    dns.blackhole = True
    si = StandIn()
    d = _daemon(si, dns, upstream_timeout_s=2)
    d.start()
    t0 = time.monotonic()
    st, _, raw = gen(d, FLASH, "nobody answers the resolver")
    took = time.monotonic() - t0
    print("    504 after %.2f s" % took)
    assert st == 504, (st, raw[:300])
    assert err_of(raw)["status"] == "DEADLINE_EXCEEDED", raw
    assert 1.5 < took < 4, took
    d.wait_log("timeout resolving " + NAME)
    assert si.log() == []
    assert d.stop() == 0
