"""Fixtures for the Python SDK tests: a poxide to talk to, the PyPI `pusher` SDK pointed at it, and a
pusher-js listener process (python/listener.mjs) that reports what it receives as JSON lines."""

import base64
import json
import os
import queue
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pusher
import pytest

HERE = Path(__file__).resolve().parent
JS_ROOT = HERE.parent
REPO_ROOT = JS_ROOT.parent
HOST = "127.0.0.1"

# The second app of the test configuration: the Python SDK only accepts numeric app ids.
APP_ID, APP_KEY, APP_SECRET = "424242", "app2_key", "app2_secret"
# Same bytes as MASTER_KEY_B64 in lib/helpers.mjs.
MASTER_KEY_B64 = base64.b64encode(bytes((i * 7 + 3) & 0xFF for i in range(32))).decode()

def _config(port):
    """The same apps as the CI script's server (../apps.toml), on `port`."""
    return f'host = "{HOST}"\nport = {port}\n\n' + (JS_ROOT / "apps.toml").read_text()


def uid(prefix=""):
    return prefix + secrets.token_hex(5)


def _free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {HOST}:{port}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def poxide_port():
    """The server the CI script started (POXIDE_TEST_PORT), or one started here from the binary."""
    if os.environ.get("POXIDE_TEST_PORT"):
        port = int(os.environ["POXIDE_TEST_PORT"])
        _wait_port(port)
        yield port
        return
    binary = os.environ.get("POXIDE_BIN", str(REPO_ROOT / "target" / "release" / "poxide"))
    port = _free_port()
    cfg = Path(tempfile.mkdtemp(prefix="poxide-py-")) / "poxide.toml"
    cfg.write_text(_config(port))
    # Drop the variables poxide reads as overrides, so the config file is what counts.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORT", "PAYLOAD_LIMIT", "ACTIVITY_TIMEOUT", "WEB_HOOK")
           and not (k.startswith("POXIDE_") and k != "POXIDE_BIN") and not k.startswith("POXA_")}
    proc = subprocess.Popen([binary, "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def sdk(poxide_port):
    return pusher.Pusher(
        app_id=APP_ID,
        key=APP_KEY,
        secret=APP_SECRET,
        host=HOST,
        port=poxide_port,
        ssl=False,
        encryption_master_key_base64=MASTER_KEY_B64,
    )


class Listener:
    """A node process running pusher-js; commands go to its stdin, reports come back as JSON lines."""

    def __init__(self, port):
        env = dict(os.environ, POXIDE_TEST_PORT=str(port), LISTENER_MASTER_KEY_B64=MASTER_KEY_B64,
                   LISTENER_APP_ID=APP_ID, LISTENER_APP_KEY=APP_KEY, LISTENER_APP_SECRET=APP_SECRET)
        self.proc = subprocess.Popen(
            ["node", str(HERE / "listener.mjs")],
            cwd=str(JS_ROOT), env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1,
        )
        self.lines = []
        self.cond = threading.Condition()
        self.stderr = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.wait_for(lambda m: m["type"] == "ready", what="listener ready")

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.put(line)

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout=5.0, what="message"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.lines:
                    if m.get("type") == "error":
                        raise AssertionError(f"listener error: {m['message']}")
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.lines}")
                self.cond.wait(left)

    def wait_count(self, pred, n, timeout=5.0, what="messages"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for m in self.lines if pred(m)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {n} {what}; got {self.lines}")
                self.cond.wait(left)

    def events(self, conn, channel):
        with self.cond:
            return [(m["event"], m["data"]) for m in self.lines
                    if m["type"] == "event" and m["conn"] == conn and m["channel"] == channel]

    def connect(self, conn, user=None):
        self.send(cmd="connect", conn=conn, user=user)
        return self.wait_for(lambda m: m["type"] == "connected" and m["conn"] == conn,
                             timeout=10, what=f"{conn} connected")["socket_id"]

    def subscribe(self, conn, channel):
        self.send(cmd="subscribe", conn=conn, channel=channel)
        return self.wait_for(lambda m: m["type"] in ("subscribed", "subscription_error")
                             and m["conn"] == conn and m["channel"] == channel, what=f"{conn} on {channel}")

    def wait_events(self, conn, channel, n, timeout=5.0):
        self.wait_count(lambda m: m["type"] == "event" and m["conn"] == conn and m["channel"] == channel,
                        n, timeout, what=f"events for {conn} on {channel}")
        return self.events(conn, channel)

    def close(self):
        try:
            self.send(cmd="quit")
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()


@pytest.fixture
def listener(poxide_port):
    lis = Listener(poxide_port)
    yield lis
    lis.close()
