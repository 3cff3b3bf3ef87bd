"""Issue 5: the /status dashboard in a real browser.

Starts the stand-in Gemini server and a daemon with an admin_token, sends
traffic that leaves served, cached, cooling and exhausted key x model
cells behind, then runs tests/browser/status.test.mjs (node's test runner,
playwright-core driving Debian's /usr/bin/chromium) against the daemon.
That script checks that the page's tables and chart show the numbers of
/api/status_data, sends more traffic and sees the page follow without a
reload, and saves screenshots (light, dark, desktop, phone) under
tests/out/.

Missing chromium, node or the npm packages is a failure, not a skip:
`make deps` installs the first two and `make check` runs `npm ci`.
"""
import json
import os
import shutil
import subprocess

import lib
from standin import FLASH, ALL_KEYS
from test_status import busy_daemon, busy_traffic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "status.test.mjs")
OUT = os.path.join(ROOT, "tests", "out")
CHROMIUM = "/usr/bin/chromium"
ADM = "browser-admin-token/+x"
SHOTS = ("desktop-light", "desktop-dark", "phone-light", "phone-dark")


def _tools():
    node = shutil.which("node")
    assert node, "node is missing: `make deps` installs nodejs"
    assert os.access(CHROMIUM, os.X_OK), \
        CHROMIUM + " is missing: `make deps` installs chromium"
    pw = os.path.join(BROWSER_DIR, "node_modules", "playwright-core",
                      "package.json")
    if not os.path.exists(pw):
        # make check does this first; running this file alone may not.
        npm = shutil.which("npm")
        assert npm, "npm is missing: `make deps` installs it"
        r = subprocess.run([npm, "ci", "--prefix", BROWSER_DIR,
                            "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, "npm ci failed:\n" + r.stdout + r.stderr
    with open(pw) as f:
        got = json.load(f)["version"]
    with open(os.path.join(BROWSER_DIR, "package.json")) as f:
        want = json.load(f)["dependencies"]["playwright-core"]
    assert got == want, "playwright-core %s installed, %s pinned: " \
        "run npm ci --prefix tests/browser" % (got, want)
    return node


def test_browser_status_page():
    node = _tools()
    si, d = busy_daemon(admin_token=ADM)
    busy_traffic(d, si)
    os.makedirs(OUT, exist_ok=True)
    for name in SHOTS:
        try:
            os.unlink(os.path.join(OUT, "status-%s.png" % name))
        except FileNotFoundError:
            pass
    env = dict(os.environ,
               STATUS_URL="http://127.0.0.1:%d" % d.port,
               STATUS_TOKEN=ADM, STATUS_MODEL=FLASH, STATUS_OUT=OUT,
               STATUS_SECRETS=json.dumps(ALL_KEYS + lib.KEYS),
               CHROMIUM=CHROMIUM)
    r = subprocess.run([node, "--test", "--test-reporter=spec", SCRIPT],
                       cwd=BROWSER_DIR, env=env, capture_output=True,
                       text=True, timeout=110)
    out = r.stdout + r.stderr
    assert r.returncode == 0, "browser test failed:\n" + out
    assert "\u2714" in out or "pass" in out, out
    for name in SHOTS:
        p = os.path.join(OUT, "status-%s.png" % name)
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n", p
        assert os.path.getsize(p) > 10000, p
    for k in ALL_KEYS:
        assert k not in d.log()
