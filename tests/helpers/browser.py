"""A headless Chromium driven over the DevTools protocol on a pipe, for tests that look at
the HTML report as a person would (no dependency: JSON messages on file descriptors 3/4).

``Browser.find()`` returns the system chromium's path or None, so tests skip cleanly where
it is not installed. Every network request the page makes is kept in ``requests``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless browser with one page; a context manager."""

    def __init__(self, executable: str, width: int = 1400, height: int = 1000,
                 timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="medfuse-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--metrics-recording-only", "--mute-audio",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}"]
        log = open(os.path.join(self.profile, "stderr.log"), "wb")  # noqa: SIM115

        def onto_3_and_4() -> None:  # in the child: the pipe ends Chromium expects
            import fcntl

            # first out of the way (either end may already be 3 or 4), then onto 3 and 4;
            # dup2 onto another number clears close-on-exec
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        # close_fds=False: the dup2'ed 3 and 4 must survive exec; Python's own descriptors
        # are not inheritable (PEP 446), so nothing else leaks into the browser.
        self.proc = subprocess.Popen([executable, *args], preexec_fn=onto_3_and_4,
                                     close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.call(domain, session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    @staticmethod
    def find() -> str | None:
        for name in NAMES:
            path = shutil.which(name)
            if path:
                return path
        return None

    # -- protocol -------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("the browser did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError("the browser closed its pipe")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self._from_child], [], [], 0)
            if not ready:
                return
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                return
            self._buf += chunk
            while b"\0" in self._buf:
                msg, _, self._buf = self._buf.partition(b"\0")
                self.events.append(json.loads(msg))

    # -- what tests use -------------------------------------------------------------------
    def open(self, path: Path, ready: str = "document.body && document.body.dataset.ready === '1'") -> float:
        """Load a file and wait until ``ready`` is true; returns the seconds it took."""
        started = time.monotonic()
        self.call("Page.navigate", session=True, url=Path(path).resolve().as_uri())
        self.wait_for(ready)
        return time.monotonic() - started

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(f"!!({expression})"):
                    return
            except BrowserError:  # the document is being replaced
                pass
            err = self.evaluate("document.body && document.body.dataset.error || ''")
            if err:
                raise BrowserError(f"the page failed: {err}")
            time.sleep(0.05)
        raise BrowserError(f"timed out waiting for {expression}")

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", session=True, expression=expression,
                        returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def screenshot(self, path: Path | None = None, full_page: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            m = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": m["width"], "height": m["height"],
                              "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True,
                                          **params)["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    @property
    def requests(self) -> list[str]:
        """URLs of every request the page made so far."""
        self._drain()
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
