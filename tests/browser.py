"""Debian's headless Chromium, driven over the DevTools protocol on a pipe: no extra package.

``--remote-debugging-pipe`` makes Chromium read commands on fd 3 and write answers and events
on fd 4, each a JSON object ended by a NUL byte. Enough of the protocol for the tests: open a
tab, navigate, run a script in the page and wait for a condition.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.test_end_to_end import stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


class Chromium:
    """One browser (one profile: its cookies and HTTP credentials) for the length of a ``with``."""

    def __init__(self, profile: Path):
        assert CHROMIUM is not None, "needs Debian's chromium"
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        # Above 9, so that placing them at 3 and 4 in the child cannot overwrite one with the other.
        child_read, child_write = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write))

        def at_3_and_4() -> None:
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=at_3_and_4)
        for fd in (commands_read, answers_write, child_read, child_write):
            os.close(fd)
        self._commands, self._answers = commands_write, answers_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.process)
        os.close(self._commands)
        os.close(self._answers)

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """One command; its result (events that arrive meanwhile are kept in ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline - time.monotonic())
            if answer.get("id") != self._next_id:
                self.events.append(answer)
                continue
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer["result"]

    def _receive(self, timeout: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], max(timeout, 0))
            chunk = os.read(self._answers, 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("chromium did not answer in time (or exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def tab(self) -> Tab:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        return Tab(self, self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"])


class Tab:
    """One page of the browser."""

    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session
        self.send("Runtime.enable")  # console messages and CSP violations arrive as events

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, self.session, **params)

    def navigate(self, url: str, timeout: float = 30) -> None:
        """Go to ``url`` and wait until the document (and its deferred scripts) loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for("location.href !== 'about:blank' && document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll until the expression is truthy; its value (a DOM node comes back as {}: test it with !!)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # a navigation replaced the page meanwhile
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression!r} did not hold within {timeout}s")
            time.sleep(0.1)
