"""Debian's chromium, headless, driven over the DevTools protocol (tornado's websocket
client, already installed with Flower): navigate, evaluate JavaScript, take screenshots,
and collect the page's uncaught exceptions."""

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.request import urlopen

from tornado.websocket import websocket_connect

from tests.servers import binary
from tests.servers import exited
from tests.waiting import wait_until


class Browser:
    """One headless chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.profile = Path(tempfile.mkdtemp(prefix="spillway-chromium-"))
        self.process = subprocess.Popen(
            [
                binary("chromium"),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.loop = asyncio.new_event_loop()
        self.errors: list[str] = []
        self._next_id = 0
        self._socket = None
        try:
            url = self._page_socket_url()
            self._socket = self.loop.run_until_complete(self._connect(url))
            self.call("Runtime.enable")
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _connect(url: str):
        # Inside the running loop, so that tornado's client binds to it.
        return await websocket_connect(url, max_message_size=64 * 1024 * 1024)

    def _page_socket_url(self, timeout: float = 30.0) -> str:
        # chromium writes the port it picked, and its browser socket path, to this file.
        active = self.profile / "DevToolsActivePort"
        wait_until(
            lambda: active.exists() and len(active.read_text().split()) >= 2,
            timeout,
            0.1,
            what="chromium's DevTools listener",
            fail_if=exited(self.process),
        )
        port = int(active.read_text().split()[0])
        targets = json.load(urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and wait for its answer (events are noted on the way)."""
        self._next_id += 1
        ident = self._next_id

        async def exchange():
            await self._socket.write_message(
                json.dumps({"id": ident, "method": method, "params": params})
            )
            while True:
                message = json.loads(await asyncio.wait_for(self._socket.read_message(), 30))
                if message.get("method") == "Runtime.exceptionThrown":
                    details = message["params"]["exceptionDetails"]
                    self.errors.append(
                        details.get("exception", {}).get("description")
                        or details.get("text", "exception")
                    )
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        return self.loop.run_until_complete(exchange())

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll a JavaScript expression until it is truthy; return its value."""
        return wait_until(
            lambda: self.evaluate(expression), timeout, what=f"true in the page: {expression}"
        )

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self.loop.run_until_complete(asyncio.sleep(0))  # let the close go out
        self.loop.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
