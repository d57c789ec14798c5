"""Headless Chromium driven over the DevTools protocol: open a page, wait for text, click a button,
take a screenshot. The UI keeps some views (e.g. an asset's Plots toggle) in component state, not
in the URL, so a screenshot of them needs a click."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from stock_assets_tests.deployment.conftest import free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
WINDOW = (1600, 1000)


class Browser:
    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        port = free_port()
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-allow-origins=*",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def page_target():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                    return next((t for t in json.load(response) if t["type"] == "page"), None)
            except OSError:
                return None

        target = wait_for(page_target, 60, "chromium's DevTools endpoint", interval=0.3)
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self._id = 0
        self.call(
            "Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1, mobile=False
        )

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def eval(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 90) -> str:
        def found():
            text = self.text()
            return text if all(n in text for n in needles) else None

        try:
            return wait_for(found, timeout, f"page text {needles}", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; page text: {self.text()[:1500]}") from None

    def click(self, label: str) -> bool:
        """Click the first button whose visible text is `label`."""
        return bool(
            self.eval(
                "(() => { const b = [...document.querySelectorAll('button')]"
                f".find(e => e.innerText.trim() === {json.dumps(label)}); if (b) {{ b.click(); return true; }}"
                " return false; })()"
            )
        )

    def screenshot(self, path: Path, settle: float = 1.5) -> Path:
        time.sleep(settle)  # let charts finish their animation
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)
