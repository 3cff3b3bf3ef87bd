#!/usr/bin/env python3
"""make demo: watch gemini-looper rotate keys with no Gemini key of your own.

Starts the stand-in Gemini server (tests/standin/gemini_standin.py) over TLS
with a test CA, the proxy in front of it with a pool of five demo keys with
small limits (one of them invalid, so it drops out at once), and a small load
generator, then prints the dashboard's URL. The keys cool down on per-minute
quotas, run out of per-day quota, recover, and the sticky key moves along:
all of it shows on /status. Ctrl-C stops everything.

  python3 tests/demo.py [--bin ./gemini-looper] [--port 48888] [--rate 3]
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["gemini-2.5-flash", "gemini-2.5-pro"]
KEYS = {
    "AIzaSyDemoPriorityKeyNumber1xxxxxxxx0001": {"project": "demo-1"},
    "AIzaSyDemoPriorityKeyNumber2xxxxxxxx0002": {"project": "demo-2"},
    "AIzaSyDemoSecondaryKeyNumber3xxxxxxx0003": {"project": "demo-3"},
    "AIzaSyDemoSecondaryKeyNumber4xxxxxxx0004": {"project": "demo-4"},
    "AIzaSyDemoInvalidKeyxxxxxxxxxxxxxxxx0005": {"project": "demo-5",
                                                 "state": "invalid"},
}
WORDS = ("proxy key quota token stream model cache minute rotate limit "
         "gemini daemon worker shared memory sticky priority").split()


def start_standin(tmp):
    subprocess.run(["sh", os.path.join(ROOT, "tests", "mkca.sh"), tmp],
                   check=True, stdout=subprocess.DEVNULL)
    cfg = {"keys": KEYS,
           "quotas": {"gemini-2.5-flash": {"rpm": 8, "tpm": 4000, "rpd": 120},
                      "gemini-2.5-pro": {"rpm": 4, "tpm": 3000, "rpd": 40}}}
    with open(os.path.join(tmp, "standin.json"), "w") as f:
        json.dump(cfg, f)
    p = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "standin",
                                      "gemini_standin.py"),
         "--cert", os.path.join(tmp, "server.pem"),
         "--key", os.path.join(tmp, "server.key"), "--port", "0",
         "--config", os.path.join(tmp, "standin.json")],
        stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        raise SystemExit("the stand-in did not start")
    return p, int(line[1])


def write_config(tmp, port, upstream_port):
    keys = list(KEYS)
    cfg = {
        "priority_keys": keys[:2],
        "secondary_keys": keys[2:],
        "models": {
            # A little under the stand-in's quotas: the proxy throttles
            # itself first, and the stand-in's 429s show what is left.
            "gemini-2.5-flash": {"tpm_limit": 3600, "tpd_limit": None,
                                 "rpm_limit": 9, "rpd_limit": 150},
            "gemini-2.5-pro": {"tpm_limit": 2800, "tpd_limit": None,
                               "rpm_limit": 5, "rpd_limit": 50},
        },
        "reset_after": "00:00",
        "timezone": "UTC",
        "default_model": "gemini-2.5-flash",
        "listen": "127.0.0.1:%d" % port,
        "upstream": "https://localhost:%d" % upstream_port,
        "upstream_ca_file": os.path.join(tmp, "ca.pem"),
        "usage_file": os.path.join(tmp, "key_usage.json"),
        "pidfile": os.path.join(tmp, "gemini-looper.pid"),
        "max_wait_s": 2,
        "workers": {"start": 4, "min_spare": 2, "max_spare": 6, "max": 32},
    }
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(path, 0o600)
    return path


def wait_healthy(port, proc):
    url = "http://127.0.0.1:%d/healthz" % port
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit("gemini-looper exited with %d" % proc.returncode)
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("gemini-looper did not come up")


def one_request(port, counts, lock):
    model = random.choice(MODELS)
    stream = random.random() < 0.4
    text = " ".join(random.choice(WORDS)
                    for _ in range(random.randint(20, 400)))
    text += " STANDIN:candidates=%d" % random.randint(5, 80)
    if stream:
        text += " STANDIN:chunks=4 STANDIN:delay_ms=300"
        path = "/v1beta/models/%s:streamGenerateContent?alt=sse" % model
    else:
        path = "/v1beta/models/%s:generateContent" % model
    body = json.dumps({"contents": [{"role": "user",
                                     "parts": [{"text": text}]}]}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    with lock:
        counts[status] = counts.get(status, 0) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "gemini-looper"))
    ap.add_argument("--port", type=int, default=48888)
    ap.add_argument("--rate", type=float, default=3.0,
                    help="requests per second")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gemini-looper-demo-")
    standin, sport = start_standin(tmp)
    conf = write_config(tmp, args.port, sport)
    proxy = subprocess.Popen([args.bin, "-d", "-c", conf],
                             stderr=open(os.path.join(tmp, "daemon.log"),
                                         "w"))
    stop = threading.Event()

    def finish(*_):
        stop.set()

    signal.signal(signal.SIGINT, finish)
    signal.signal(signal.SIGTERM, finish)
    try:
        wait_healthy(args.port, proxy)
        print("gemini-looper demo: the stand-in Gemini is on port %d, the "
              "proxy on %d." % (sport, args.port))
        print("Open http://127.0.0.1:%d/status and watch the keys rotate."
              % args.port)
        print("Daemon log: %s. Ctrl-C stops." % os.path.join(tmp,
                                                           "daemon.log"))
        counts, lock = {}, threading.Lock()
        last = time.monotonic()
        while not stop.is_set():
            threading.Thread(target=one_request,
                             args=(args.port, counts, lock),
                             daemon=True).start()
            stop.wait(random.expovariate(args.rate))
            if time.monotonic() - last > 10:
                last = time.monotonic()
                with lock:
                    print("answers so far: " + ", ".join(
                        "%s: %d" % (k, v) for k, v in sorted(counts.items())),
                        flush=True)
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(15)
        except subprocess.TimeoutExpired:
            proxy.kill()
        standin.terminate()
        standin.wait(5)
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
