#!/usr/bin/python3
"""Drives the operator panel in headless Chromium (Debian's chromium) over the
DevTools protocol on a pipe (--remote-debugging-pipe: no port, no websocket
library), as an operator would: loads the page, checks that the abort buttons
are disabled before a login, logs in through the page's form, scans a serial
into a channel's field (typed text and Enter, as a barcode scanner sends it),
waits until that channel's banner has gone from TESTING to a verdict, takes a
screenshot, and reports every console message, exception and failed load.

Used by tests/station/test_panel_cli.cpp. Prints one JSON object on stdout:
  {"ok": bool, "history": "...", "banner": "...", "buttons_disabled_before_login": bool,
   "console": [...], "screenshot": PATH, "error": "..."}
Exit code 0 when it ran to the end (the caller judges the result), 2 on a
driver failure (chromium did not answer).
"""
import argparse
import base64
import json
import os
import select
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, width, height):
        self.to_chrome_r, self.to_chrome_w = os.pipe()
        self.from_chrome_r, self.from_chrome_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="eol_panel_chromium_")

        def child():
            # Copies first: a pipe end may itself be fd 3 or 4, and dup2 onto
            # itself would keep its close-on-exec flag.
            r, w = os.dup(self.to_chrome_r), os.dup(self.from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "--no-first-run", "--user-data-dir=" + self.profile,
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child, close_fds=False)
        os.close(self.to_chrome_r)
        os.close(self.from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.profile])

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self.from_chrome_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_chrome_r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def pump(self, seconds):
        """Collects events for a while."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def eval(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError("evaluate %r: %s" % (expression, r["exceptionDetails"]))
        return r.get("result", {}).get("value")


def report_console(b, out):
    """Every console message, exception and failed load the page had."""
    for e in b.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            out["console"].append("console.%s: %s" % (p.get("type"), " ".join(str(x.get("value", x.get("description", ""))) for x in p.get("args", []))))
        elif m == "Runtime.exceptionThrown":
            out["console"].append("exception: %s" % json.dumps(p.get("exceptionDetails", {}))[:500])
        elif m == "Log.entryAdded":
            entry = p.get("entry", {})
            out["console"].append("log.%s: %s %s" % (entry.get("level"), entry.get("text"), entry.get("url", "")))
        elif m == "Network.loadingFailed" and p.get("type") != "EventSource":
            out["console"].append("load failed: %s %s" % (p.get("errorText"), p.get("type")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--channel", type=int, default=1)
    ap.add_argument("--serial", default="")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--look", action="store_true", help="only load the page and take the screenshot")
    a = ap.parse_args()

    out = {"ok": False, "history": "", "banner": "", "console": [], "screenshot": a.screenshot}
    b = Browser(1600, 1000)
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        b.session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            b.call(m)
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        b.call("Page.navigate", {"url": a.url})
        card = "document.querySelector('#channel-%d')" % a.channel
        end = time.monotonic() + 30
        while not b.eval("!!(%s && document.querySelector('#station-state').textContent !== '…')" % card):
            if time.monotonic() > end:
                raise TimeoutError("the page did not show channel %d and a station state" % a.channel)
            b.pump(0.2)
        if a.look:
            b.pump(2.0)
            shot = b.call("Page.captureScreenshot", {"format": "png"})
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            out["ok"] = True
            return 0
        out["buttons_disabled_before_login"] = b.eval(
            "[...%s.querySelectorAll('button')].every(x => x.disabled)" % card)
        out["language"] = b.eval("document.documentElement.lang")
        # Log in through the form.
        b.eval("document.querySelector('#login-user').value = %s;"
               "document.querySelector('#login-password').value = %s;"
               "document.querySelector('#login-button').click(); true" % (json.dumps(a.user), json.dumps(a.password)))
        end = time.monotonic() + 30
        while not b.eval("!document.querySelector('#who').hidden"):
            if time.monotonic() > end:
                raise TimeoutError("the login did not succeed")
            b.pump(0.2)
        out["buttons_enabled_after_login"] = b.eval(
            "[...%s.querySelectorAll('button')].every(x => !x.disabled)" % card)
        # Scan the serial: text typed into the focused field, then Enter.
        b.eval("%s.querySelector('input').focus(); true" % card)
        b.call("Input.insertText", {"text": a.serial})
        for kind in ("keyDown", "keyUp"):
            b.call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                              "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13})
        # Wait for TESTING and then a verdict on that channel's banner.
        end = time.monotonic() + a.timeout
        history = ""
        while time.monotonic() < end:
            history = b.eval("%s.querySelector('.banner').dataset.history" % card) or ""
            words = history.split()
            if "testing" in words and words[-1] not in ("testing", "ready"):
                break
            b.pump(0.25)
        out["history"] = history
        out["banner"] = b.eval("%s.querySelector('.banner').textContent" % card)
        out["reason"] = b.eval("%s.querySelector('.reason').textContent" % card)
        out["recent_links"] = b.eval("[...document.querySelectorAll('#recent-table a')].map(x => x.getAttribute('href'))")
        out["plot_canvases"] = b.eval("document.querySelectorAll('.plot canvas').length")
        out["plot_points"] = b.eval(
            "window.Chart ? Object.values(Chart.instances).reduce((n, c) => n + c.data.datasets[0].data.length, 0) : -1")
        b.pump(1.0)  # let the screen settle (last-cells list, counters)
        shot = b.call("Page.captureScreenshot", {"format": "png"})
        with open(a.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        out["ok"] = True
    except Exception as ex:  # reported, the caller fails the test with it
        out["error"] = "%s: %s" % (type(ex).__name__, ex)
    finally:
        report_console(b, out)
        b.close()
    print(json.dumps(out))
    return 0 if "error" not in out else 2


if __name__ == "__main__":
    sys.exit(main())
