"""A tiny client for Jasmin's jCli console (a telnet line protocol on loopback): send a line,
read what comes back up to the next prompt. Telnet option negotiation is ignored (jCli works
without any option agreed) and terminal escape sequences are stripped from the answers.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Sequence

PROMPTS = ("jcli : ", "> ")
_TELNET = re.compile(rb"\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0|\xff[\xf0-\xfa]", re.S)
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b.")


class JCliError(RuntimeError):
    """jCli refused a command (its answer is in the message)."""


def clean(raw: bytes) -> str:
    """Telnet commands and terminal escapes removed, line ends normalised."""
    text = _TELNET.sub(b"", raw).decode("utf-8", "replace")
    return _ESCAPE.sub("", text).replace("\r", "")


class JCli:
    def __init__(self, host: str, port: int, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._sock = socket.create_connection((host, port), timeout=timeout)
        # the welcome ends with the session's reference; the first prompt comes after input
        self.banner = self._until(lambda text: re.search(r"Session ref: \d+\n", text) is not None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"quit\r\n")
        self._sock.close()

    def __enter__(self) -> JCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _until_prompt(self) -> str:
        return self._until(lambda text: text.endswith(PROMPTS))

    def _until(self, done: Callable[[str], bool]) -> str:
        raw = b""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            text = clean(raw)
            if done(text):
                return text
            chunk = self._sock.recv(65536)
            if not chunk:
                raise JCliError(f"jCli closed the connection after: {text[-500:]!r}")
            raw += chunk
        raise JCliError(f"no jCli prompt within {self.timeout:.0f} s: {clean(raw)[-500:]!r}")

    def send(self, line: str) -> str:
        """One line typed; the answer without the echo and the prompt."""
        self._sock.sendall(line.encode() + b"\r\n")
        text = self._until_prompt()
        for prompt in PROMPTS:
            text = text.removesuffix(prompt)
        return text.replace(line, "", 1).strip()

    def run(self, lines: Sequence[str], expect: str) -> str:
        """Lines of one interactive command (the last is `ok` or the command itself); the
        final answer must contain `expect`, or JCliError."""
        answers = [self.send(line) for line in lines]
        for line, answer in zip(lines, answers, strict=True):
            if answer.startswith(("Error", "Unknown")) or "Error:" in answer:
                raise JCliError(f"jCli refused {line!r}: {answer}")
        if expect not in answers[-1]:
            raise JCliError(f"jCli answered {answers[-1]!r} to {lines[-1]!r}, not {expect!r}")
        return answers[-1]
