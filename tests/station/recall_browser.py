#!/usr/bin/python3
"""Drives the public recall page (/recall) in headless Chromium (Debian's
chromium) over the DevTools protocol, as a person would: keystrokes into the
serial field ("o" must become "0", "!" must not be entered, spaces and dashes
are dropped), a serial with a misread check character (the page offers the
correction, which is clicked), Enter, the answer; then an unknown serial.
Reuses the Browser of panel_browser.py (same directory).

Used by tests/station/test_recall.cpp. Prints one JSON object on stdout
(the caller judges it); exit 0 when it ran to the end, 2 on a driver failure.
"""
import argparse
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from panel_browser import Browser, report_console  # noqa: E402


def key(b, text):
    """One keystroke that types `text` (a printable character)."""
    b.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": text, "key": text, "unmodifiedText": text})
    b.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": text})


def enter(b):
    for kind in ("keyDown", "keyUp"):
        b.call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                          "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13})


def as_typed(serial):
    """Lower case, O for 0, a dash and a space as people write it."""
    s = serial.lower().replace("0", "o")
    return s[:4] + "-" + s[4:8] + " " + s[8:12] + "-" + s[12:]


def clear(b):
    b.eval("(() => { const i = document.querySelector('#serial'); i.value = '';"
           " i.dispatchEvent(new Event('input')); i.focus(); return true; })()")


def value(b):
    return b.eval("document.querySelector('#serial').value")


def wait(b, expression, what, timeout=30):
    end = time.monotonic() + timeout
    while not b.eval(expression):
        if time.monotonic() > end:
            raise TimeoutError(what)
        b.pump(0.1)


def answer(b, serial):
    wait(b, "(() => { const a = document.querySelector('#answer');"
            " return !a.hidden && a.dataset.serial === %s; })()" % json.dumps(serial),
         "no answer for " + serial)
    return b.eval("(() => { const a = document.querySelector('#answer'); return {status: a.dataset.status,"
                  " keys: a.dataset.keys, headline: document.querySelector('#headline').textContent,"
                  " action: document.querySelector('#action').textContent,"
                  " disposal: document.querySelector('#disposal').textContent}; })()")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--affected", required=True)
    ap.add_argument("--typo", required=True, help="the affected serial with one confusable character swapped")
    ap.add_argument("--unknown", required=True)
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()

    out = {"ok": False, "console": [], "screenshot": a.screenshot}
    b = Browser(900, 1000)
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        b.session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            b.call(m)
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 900, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        b.call("Page.navigate", {"url": a.url})
        wait(b, "document.body && document.body.dataset.ready === 'true'", "the page did not get its configuration")
        out["title"] = b.eval("document.title")
        clear(b)
        key(b, "o")
        out["after_o"] = value(b)
        key(b, "!")
        out["after_bang"] = value(b)
        out["refused_shown"] = b.eval("!document.querySelector('#refused').hidden")
        key(b, " ")
        key(b, "-")
        out["after_spaces"] = value(b)
        out["counter"] = b.eval("document.querySelector('#counter').textContent")

        # The affected device, misread at one confusable character: the page offers the fix.
        clear(b)
        for ch in as_typed(a.typo):
            key(b, ch)
        out["typo_value"] = value(b)
        out["check_disabled_on_typo"] = b.eval("document.querySelector('#check').disabled")
        out["fixes"] = b.eval("[...document.querySelectorAll('#fix-list button')].map(x => x.textContent)")
        b.eval("(() => { for (const x of document.querySelectorAll('#fix-list button'))"
               " if (x.textContent === %s) x.click(); return true; })()" % json.dumps(a.affected))
        out["typed_affected"] = value(b)
        enter(b)
        out["affected"] = answer(b, a.affected)

        # An unknown serial, as typed.
        clear(b)
        for ch in as_typed(a.unknown):
            key(b, ch)
        enter(b)
        out["unknown"] = answer(b, a.unknown)
        b.pump(0.5)
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
