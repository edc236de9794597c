"""The PyPI `pusher` SDK against apps kept in a database (SQLite), changed with `poxide apps` while
poxide runs: a rotated secret and a disabled app reach the SDK without a restart."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pusher
import pytest

from conftest import HOST, REPO_ROOT, _free_port, _wait_port

BINARY = os.environ.get("POXIDE_BIN", str(REPO_ROOT / "target" / "release" / "poxide"))


def apps(url, *args):
    run = subprocess.run([BINARY, "apps", "--database-url", url, *args],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)


def until(check, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome is not None:
            return outcome
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.05)


def refused(client, error):
    """The SDK's trigger fails with `error` (and not otherwise): that error, else None."""
    try:
        client.trigger("probe", "e", {})
    except error as e:
        return e
    return None


@pytest.fixture
def stored():
    """A poxide reading its apps from a fresh SQLite file every 100 ms: (url, port)."""
    work = Path(tempfile.mkdtemp(prefix="poxide-py-store-"))
    url = f"sqlite://{work / 'apps.db'}"
    port = _free_port()
    cfg = work / "poxide.toml"
    cfg.write_text(f'host = "{HOST}"\nport = {port}\n\n[apps_store]\nurl = "{url}"\nrefresh_ms = 100\n'
                   "\n[metrics]\nport = 0\n")
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("POXIDE_") and k != "POXIDE_BIN") and k != "PORT"}
    proc = subprocess.Popen([BINARY, "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield url, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def sdk(port, app_id, key, secret):
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, host=HOST, port=port, ssl=False)


def test_a_rotated_secret_and_a_disabled_app_reach_the_sdk_live(stored):
    url, port = stored
    created = apps(url, "add")
    app_id, key = created["id"], created["key"]
    assert app_id.isdigit() and len(key) == 20
    old = sdk(port, app_id, key, created["secret"])
    until(lambda: True if refused(old, pusher.errors.PusherError) is None else None, "the app served")

    rotated = apps(url, "set", app_id, "--rotate-secret")["secret"]
    assert rotated != created["secret"]
    error = until(lambda: refused(old, pusher.errors.PusherBadAuth), "the old secret refused")
    assert "Invalid signature" in str(error)
    new = sdk(port, app_id, key, rotated)
    assert new.trigger("c", "e", {"n": 1}) == {}

    apps(url, "set", app_id, "enabled=false")
    error = until(lambda: refused(new, pusher.errors.PusherForbidden), "the app disabled")
    assert str(error) == f"Application is disabled: {app_id}"
