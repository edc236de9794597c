#!/usr/bin/env python3
"""Reference driver of `poxide client-conformance` for pysher (PyPI `pysher` 1.0.8).

Speaks the driver protocol of the client conformance harness: commands come as JSON Lines on
stdin, reports go as JSON Lines to stdout (one object per line, flushed at once, under a lock
because pysher calls back from its own threads), logs go to stderr. See README.md next to this
file for set-up and for what pysher does not implement.

pysher has almost no API beyond `Pusher(...)`, `connect()`, `subscribe()`, `unsubscribe()`,
`disconnect()`, `Channel.bind(name, fn)`, `Channel.trigger()` and `Connection.bind(name, fn)`:

* no state-change callback: `Connection.state` is a plain attribute (connection.py:39, 105, 120,
  139, 176, 247, 253, 267, 308). The driver watches the attribute's assignments (a subclass with
  a `state` property, swapped in for pysher's Connection class) and reports each change.
* no bind_global: a channel hands an event only to callbacks bound to its exact name
  (channel.py:38-41). The driver sees every event a channel hands out by subclassing Channel
  (its `_handle_event`, the one path to bound callbacks) and swapping the subclass in.
* no processing of internal events: `pusher_internal:subscription_succeeded`,
  `pusher:subscription_error`, `pusher_internal:member_added`, ... reach channel bindings like any
  other event, with the raw (string) data. The driver translates each such event into the matching
  report one to one (no state of its own) and says so with a `"pysher_event"` key.

Nothing in the library's behaviour is changed: the swapped-in subclasses only observe.
"""

import json
import logging
import os
import sys
import threading
import time
import traceback

# stdout carries reports only: keep the real stream for them and send every stray print to stderr.
_REPORT_OUT = sys.stdout
sys.stdout = sys.stderr

logging.basicConfig(
    stream=sys.stderr,
    level=logging.INFO,
    format="[pysher driver %(asctime)s %(threadName)s %(name)s] %(message)s",
)
LOG = logging.getLogger("driver")

try:
    import pysher
    import pysher.channel
    import pysher.connection
    import pysher.pusher
except Exception:  # pragma: no cover - set-up problem
    LOG.error("cannot import pysher (see README.md: pip install -r requirements.txt)\n%s", traceback.format_exc())
    sys.exit(1)

_WRITE_LOCK = threading.Lock()


def report(obj):
    line = json.dumps(obj, ensure_ascii=False)
    with _WRITE_LOCK:
        _REPORT_OUT.write(line + "\n")
        _REPORT_OUT.flush()
    LOG.info("report %s", line)


def env_flag(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.lower() not in ("0", "false", "no", "off")


# Driver settings (all optional; the defaults are what the harness expects).
#   PYSHER_DRIVER_AUTH=endpoint|secret  endpoint (default): pysher's auth_endpoint option, i.e. it
#                                       POSTs to the harness. secret: pysher signs locally with
#                                       PYSHER_DRIVER_SECRET (default "secret", the harness app's).
#   PYSHER_DRIVER_AUTO_SUB=1|0          pysher's auto_sub (resubscribe after a reconnect), default 1.
#   PYSHER_DRIVER_USER_DATA=<json>      pysher's user_data (its presence channel_data), default
#                                       {"user_id":"u1","user_info":{"name":"Ann"}}.
#   PYSHER_DRIVER_SET_TIMERS=1          map activity_timeout_ms / pong_timeout_ms onto the
#                                       Connection attributes ping_interval / pong_timeout
#                                       (not constructor options); default 0: answer unsupported.
#   PYSHER_DRIVER_PRE_REGISTER=1        work around pysher's subscribe race (README): put a Channel
#                                       into pusher.channels before subscribe() sends the frame.
#                                       Default 0: pysher as it is.
#   PYSHER_DRIVER_DISCONNECT_TIMEOUT_S  bound of the join in pusher.disconnect(), default 120.
AUTH_MODE = os.environ.get("PYSHER_DRIVER_AUTH", "endpoint").strip().lower() or "endpoint"
AUTH_SECRET = os.environ.get("PYSHER_DRIVER_SECRET", "secret")
AUTO_SUB = env_flag("PYSHER_DRIVER_AUTO_SUB", True)
SET_TIMERS = env_flag("PYSHER_DRIVER_SET_TIMERS", False)
DISCONNECT_TIMEOUT_S = float(os.environ.get("PYSHER_DRIVER_DISCONNECT_TIMEOUT_S", "120"))
PRE_REGISTER = env_flag("PYSHER_DRIVER_PRE_REGISTER", False)
DEFAULT_USER_DATA = {"user_id": "u1", "user_info": {"name": "Ann"}}


def parse_data(data):
    """pysher hands channel data over untouched (a JSON string from a Pusher server)."""
    if isinstance(data, (str, bytes)):
        try:
            return json.loads(data)
        except ValueError:
            return None
    return data


class Driver:
    def __init__(self):
        self.pusher = None
        self.connected = False
        self.pending = []  # channels asked for before connection_established (see subscribe)
        self.pending_lock = threading.Lock()
        self.last_state = None
        self.state_lock = threading.Lock()

    # ---- connection state -------------------------------------------------------------------

    def on_state(self, conn, old, new):
        """Called on every assignment of pysher's Connection.state, from whichever thread."""
        LOG.info("pysher state %s -> %s", old, new)
        if self.pusher is not None and conn is not self.pusher.connection:
            return  # an earlier Pusher's connection, still winding down
        if new == "connected":
            self.connected = True
        elif new in ("disconnected", "unavailable"):
            # not on "failed": pysher also sets that with the socket still open (a frame that is
            # not JSON goes to on_error: connection.py:137-140, 181)
            self.connected = False
        mapped = map_state(conn, new)
        if mapped is None:
            return
        rep = {"report": "state", "state": mapped}
        if mapped == "connected":
            rep["socket_id"] = conn.socket_id
        if new != mapped:
            rep["pysher_state"] = new
        with self.state_lock:
            key = (mapped, rep.get("socket_id"))
            if key == self.last_state:
                return
            self.last_state = key
            report(rep)

    def on_connection_established(self, data, conn):
        if conn is not self.pusher.connection:
            return
        # Bound after pysher's own _connect_handler, so socket_id and state are set and, with
        # auto_sub, the channels are resubscribed. This is where pysher's README subscribes.
        with self.pending_lock:
            pending, self.pending = self.pending, []
        for name in pending:
            LOG.info("subscribing %s now that the connection is established", name)
            self.do_subscribe(name)

    def on_pusher_error(self, data, conn):
        if conn is not self.pusher.connection:
            return
        # pysher's own handler (bound first, connection.py:37) has already acted on the code.
        d = parse_data(data)
        message = code = None
        if isinstance(d, dict):
            message = d.get("message")
            code = d.get("code")
        if message is not None and not isinstance(message, str):
            message = json.dumps(message)
        if not isinstance(code, int) or isinstance(code, bool):
            code = None
        report({"report": "error", "message": message, "code": code})

    # ---- channels ---------------------------------------------------------------------------

    def on_channel_event(self, channel, event_name, data):
        name = channel.name
        if self.pusher is None or self.pusher.channels.get(name) is not channel:
            return
        if event_name.startswith("pusher:") or event_name.startswith("pusher_internal:"):
            self.on_internal_event(name, event_name, data)
            return
        report({"report": "event", "channel": name, "event": event_name, "data": data})

    def on_internal_event(self, name, event_name, data):
        kind = event_name.split(":", 1)[1]
        d = parse_data(data)
        if kind == "subscription_succeeded":
            rep = {"report": "subscribed", "channel": name}
            if name.startswith("presence-"):
                presence = d.get("presence") if isinstance(d, dict) else None
                if isinstance(presence, dict):
                    ids = presence.get("ids")
                    if not isinstance(ids, list):
                        ids = list((presence.get("hash") or {}).keys())
                    rep["members"] = {
                        "count": presence.get("count", len(ids)),
                        # pysher's own idea of the user: the user_data it sent as channel_data
                        "me": (self.pusher.user_data or {}).get("user_id"),
                        "ids": sorted(ids, key=str),
                    }
            rep["pysher_event"] = event_name
            report(rep)
        elif kind == "subscription_error":
            status = d.get("status") if isinstance(d, dict) else None
            typ = d.get("type") if isinstance(d, dict) else None
            report({
                "report": "subscription_error", "channel": name,
                "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
                "type": typ if isinstance(typ, str) else None,
                "pysher_event": event_name,
            })
        elif kind == "member_added":
            d = d if isinstance(d, dict) else {}
            report({"report": "member_added", "channel": name, "id": d.get("user_id"),
                    "info": d.get("user_info"), "pysher_event": event_name})
        elif kind == "member_removed":
            d = d if isinstance(d, dict) else {}
            report({"report": "member_removed", "channel": name, "id": d.get("user_id"),
                    "pysher_event": event_name})
        elif kind == "subscription_count":
            count = d.get("subscription_count") if isinstance(d, dict) else None
            report({"report": "subscription_count", "channel": name, "count": count,
                    "pysher_event": event_name})
        elif kind == "cache_miss":
            report({"report": "cache_miss", "channel": name, "pysher_event": event_name})
        else:
            LOG.info("internal event on %s not reported: %s %r", name, event_name, data)

    def do_subscribe(self, name):
        placeholder = None
        if PRE_REGISTER:
            # pysher sends pusher:subscribe (pusher.py:110) before it stores the Channel
            # (pusher.py:112); an answer read in between is dropped (pusher.py:144).
            placeholder = ObservedChannel(name, self.pusher.connection)
            self.pusher.channels[name] = placeholder
        try:
            self.pusher.subscribe(name)
        except Exception as e:
            if placeholder is not None and self.pusher.channels.get(name) is placeholder:
                del self.pusher.channels[name]  # auth endpoint answers: AssertionError (not 200), KeyError, ValueError...
            LOG.info("pysher.subscribe(%s) raised:\n%s", name, traceback.format_exc())
            report({
                "report": "subscription_error", "channel": name, "status": None, "type": None,
                "message": "%s: %s" % (type(e).__name__, e),
            })

    # ---- commands ---------------------------------------------------------------------------

    def handle(self, msg):
        cmd = msg.get("cmd")
        cid = msg.get("id")
        if cmd == "connect":
            self.connect(msg.get("options") or {})
        elif cmd == "subscribe":
            self.subscribe(msg["channel"])
        elif cmd == "unsubscribe":
            self.require(cmd)
            name = msg["channel"]
            with self.pending_lock:
                if name in self.pending:
                    self.pending.remove(name)
                    return
            self.pusher.unsubscribe(name)
        elif cmd == "trigger":
            self.trigger(cid, msg["channel"], msg["event"], msg.get("data"))
        elif cmd == "signin":
            report({"report": "unsupported", "cmd": "signin",
                    "why": "pysher 1.0.8 has no user sign-in (no signin(), no user auth endpoint option: pusher.py:17-21)"})
        elif cmd == "disconnect":
            self.require(cmd)
            self.disconnect()
        else:
            report({"report": "unsupported", "cmd": str(cmd), "why": "unknown command"})

    def require(self, cmd):
        if self.pusher is None:
            raise RuntimeError("%s before connect" % cmd)

    def connect(self, options):
        unsupported = [k for k in ("activity_timeout_ms", "pong_timeout_ms") if k in options]
        if unsupported and not SET_TIMERS:
            report({"report": "unsupported", "cmd": "connect",
                    "why": "pysher 1.0.8 has no option for %s: its timers are fixed (connection.py:31, 57, 60: "
                           "ping after 120 s of silence, pong wait 30 s, reconnect after 305 s) and it ignores the "
                           "server's activity_timeout (connection.py:250-253)" % " / ".join(unsupported)})
            return
        if self.pusher is not None:
            LOG.info("connect: a Pusher exists already; disconnecting it and making a new one "
                     "(a pysher Connection is a Thread and cannot start twice)")
            self.disconnect()
        tls = bool(options.get("tls"))
        user_data = DEFAULT_USER_DATA
        if os.environ.get("PYSHER_DRIVER_USER_DATA"):
            user_data = json.loads(os.environ["PYSHER_DRIVER_USER_DATA"])
        if isinstance(options.get("channel_data"), str):  # not in the spec: see README
            user_data = json.loads(options["channel_data"])
        kwargs = dict(
            key=options["key"],
            secure=tls,
            custom_host=options.get("host", "127.0.0.1"),
            port=options.get("port", 443 if tls else 80),
            auto_sub=AUTO_SUB,
            user_data=user_data,
            log_level=logging.INFO,
        )
        if AUTH_MODE == "secret":
            kwargs["secret"] = AUTH_SECRET
        elif options.get("auth_endpoint"):
            kwargs["auth_endpoint"] = options["auth_endpoint"]
        if "encryption_master_key_base64" in options:
            LOG.info("encryption_master_key_base64 ignored: pysher has no encrypted channels")
        LOG.info("pysher.Pusher(%s)", {k: v for k, v in kwargs.items() if k != "secret"})
        self.connected = False
        self.last_state = None
        self.pusher = pysher.Pusher(**kwargs)
        conn = self.pusher.connection
        LOG.info("pysher URL: %s", self.pusher.url)
        if SET_TIMERS:
            if "activity_timeout_ms" in options:
                conn.ping_interval = options["activity_timeout_ms"] / 1000.0
            if "pong_timeout_ms" in options:
                conn.pong_timeout = options["pong_timeout_ms"] / 1000.0
            LOG.info("timers set on the Connection: ping_interval=%s pong_timeout=%s",
                     conn.ping_interval, conn.pong_timeout)
        conn.bind("pusher:connection_established", self.on_connection_established, conn)
        conn.bind("pusher:error", self.on_pusher_error, conn)
        self.pusher.connect()

    def subscribe(self, name):
        self.require("subscribe")
        if name.startswith("private-encrypted-"):
            report({"report": "unsupported", "cmd": "subscribe",
                    "why": "pysher 1.0.8 has no end-to-end encrypted channels: it would subscribe to %s as a "
                           "plain private channel and hand over the ciphertext (pusher.py:105-106, channel.py:38-41)" % name})
            return
        with self.pending_lock:
            if not self.connected:
                # pysher sends right away on whatever socket it has (connection.py:207-222) and,
                # with an auth endpoint, posts socket_id "" (pusher.py:172-175); its README
                # subscribes in the pusher:connection_established callback, and so does the driver.
                LOG.info("subscribe %s: not connected yet, waiting for pusher:connection_established", name)
                if name not in self.pending:
                    self.pending.append(name)
                return
        self.do_subscribe(name)

    def trigger(self, cid, name, event, data):
        self.require("trigger")
        channel = self.pusher.channel(name)
        if channel is None:
            report({"report": "result", "id": cid, "ok": False,
                    "error": "no pysher Channel %s (pysher triggers through a subscribed channel)" % name})
            return
        # Channel.trigger returns None and drops silently what is not client-* on a private- or
        # presence- channel (channel.py:24-36); Connection.send_event swallows send errors
        # (connection.py:219-222). So there is nothing to report but "no exception".
        channel.trigger(event, data)
        report({"report": "result", "id": cid, "ok": True, "returned": None})

    def disconnect(self):
        p = self.pusher
        with self.pending_lock:
            self.pending = []
        conn = p.connection
        if not conn.is_alive() and conn.ident is None:
            LOG.info("disconnect: pysher's thread never started")
            return

        # pusher.disconnect() closes the socket at once but then joins pysher's thread, which
        # sits in select() with the 100 s timeout pysher passes as ping_timeout (pusher.py:73)
        # and only then notices (state "disconnected"). Run it aside so later commands go on.
        def run():
            try:
                p.disconnect(timeout=DISCONNECT_TIMEOUT_S)
            except RuntimeError as e:
                LOG.info("pusher.disconnect raised %s", e)
            if conn.is_alive():
                LOG.info("pysher's connection thread is still alive %.0f s after disconnect()", DISCONNECT_TIMEOUT_S)
            else:
                LOG.info("pusher.disconnect() returned")

        threading.Thread(target=run, name="DriverDisconnect", daemon=True).start()

    def shutdown(self):
        p = self.pusher
        if p is not None:
            try:
                sock = p.connection.socket
                p.connection.needs_reconnect = False
                p.connection.disconnect_called = True
                if sock is not None:
                    t = threading.Thread(target=sock.close, daemon=True)
                    t.start()
                    t.join(1.0)
            except Exception:
                LOG.info("close on exit failed:\n%s", traceback.format_exc())


DRIVER = Driver()


def map_state(conn, new):
    """pysher's state names onto pusher-js's (the spec's); None: not reported.

    pysher borrowed pusher-js's names but not their meaning:
    * "failed" is set on every socket error, missed pong and silence timeout, and pysher then
      always retries (connection.py:137-140, 240-248, 306-309): pusher-js calls that unavailable
      ("failed" is terminal there). After disconnect() was called it leads nowhere: not reported.
    * "disconnected" is set on every socket close (connection.py:174-176), also when a retry
      follows: that one is reported as unavailable, a close without retry as disconnected.
    * a retry never goes back to "connecting": pysher stays "unavailable" until connected
      (connection.py:117-126).
    """
    if new == "initialized":
        return None
    if new == "failed":
        return None if conn.disconnect_called else "unavailable"
    if new == "disconnected":
        if conn.needs_reconnect and not conn.disconnect_called:
            return "unavailable"
        return "disconnected"
    return new


class ObservedConnection(pysher.connection.Connection):
    """pysher's Connection, with its `state` attribute watched (behaviour unchanged)."""

    @property
    def state(self):
        return self.__dict__.get("_observed_state")

    @state.setter
    def state(self, value):
        old = self.__dict__.get("_observed_state")
        self.__dict__["_observed_state"] = value
        try:
            DRIVER.on_state(self, old, value)
        except Exception:
            LOG.error("state report failed:\n%s", traceback.format_exc())


class ObservedChannel(pysher.channel.Channel):
    """pysher's Channel, with every event it hands to bound callbacks reported first."""

    def _handle_event(self, event_name, data):
        try:
            DRIVER.on_channel_event(self, event_name, data)
        except Exception:
            LOG.error("event report failed:\n%s", traceback.format_exc())
        return super()._handle_event(event_name, data)


# pusher.py imported both names into its own namespace (pusher.py:1-2) and builds them from there.
pysher.pusher.Connection = ObservedConnection
pysher.pusher.Channel = ObservedChannel


def main():
    LOG.info("pysher driver: pysher %s at %s, websocket-client %s, auth=%s auto_sub=%s",
             _dist_version("pysher"), os.path.dirname(pysher.__file__), _dist_version("websocket-client"),
             AUTH_MODE, AUTO_SUB)
    # Commands run in order on one worker so that a slow auth request or disconnect() does not
    # keep stdin from being read (an "exit" is acted on at once).
    import queue

    commands = queue.Queue()

    def worker():
        while True:
            msg = commands.get()
            if msg is None:
                return
            try:
                DRIVER.handle(msg)
            except Exception as e:
                LOG.error("command %s failed:\n%s", msg.get("cmd"), traceback.format_exc())
                report({"report": "result", "id": msg.get("id"), "ok": False, "error": "%s: %s" % (type(e).__name__, e)})

    threading.Thread(target=worker, name="DriverCommands", daemon=True).start()
    report({"report": "ready"})
    while True:
        line = sys.stdin.readline()
        if not line:
            LOG.info("stdin closed; exiting")
            break
        text = line.strip()
        if not text or text.startswith("//"):
            continue
        try:
            msg = json.loads(text)
        except ValueError:
            LOG.error("bad command line (not JSON): %s", text)
            continue
        if not isinstance(msg, dict):
            LOG.error("bad command line (not an object): %s", text)
            continue
        LOG.info("cmd %s", text)
        if msg.get("cmd") == "exit":
            break
        commands.put(msg)
    DRIVER.shutdown()
    with _WRITE_LOCK:
        _REPORT_OUT.flush()
    os._exit(0)


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
