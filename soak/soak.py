#!/usr/bin/env python3
"""Bounded soak test of a running poxide server (started by soak/run.sh).

One asyncio process holds SOAK_CONNECTIONS WebSocket connections to
ws://127.0.0.1:PORT/app/soak-key?protocol=7 and, for SOAK_SECONDS, keeps churn going:
reconnects (some clean closes, some TCP aborts), public subscribe/unsubscribe, presence
join/leave, signed REST triggers at a steady rate and client events on private channels.
Every SOAK_SAMPLE_SECONDS it samples the server's RSS, open descriptors and CPU time from
/proc/PID and writes a CSV row with the traffic of the interval. At the end it closes
everything, waits SOAK_SETTLE_SECONDS, takes a final sample, plots, prints a summary and
exits non-zero if the server died or its descriptors did not return near the baseline.

All traffic goes to 127.0.0.1. Every loop is bounded by time; the whole run also has a hard
deadline (run.sh adds an outer `timeout`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import gc
import hashlib
import hmac
import json
import math
import os
import random
import signal
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsclient import WsClient, _retrieve  # noqa: E402

APP_ID = "soak"
KEY = "soak-key"
SECRET = b"soak-secret"
HOST = "127.0.0.1"  # the only address this script ever talks to

PONG = json.dumps({"event": "pusher:pong", "data": {}})
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_num(name: str, default, cast=float):
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        sys.exit(f"soak: {name}={raw!r} is not a {cast.__name__}")


class Cfg:
    def __init__(self) -> None:
        self.connections = env_num("SOAK_CONNECTIONS", 10000, int)
        self.seconds = env_num("SOAK_SECONDS", 600.0)
        self.sample_every = env_num("SOAK_SAMPLE_SECONDS", 10.0)
        self.settle = env_num("SOAK_SETTLE_SECONDS", 30.0)
        # churn, as fractions of the connections per second
        self.reconnect_rate = env_num("SOAK_RECONNECT_RATE", 0.01)
        self.abort_fraction = env_num("SOAK_ABORT_FRACTION", 0.25)
        self.sub_rate = env_num("SOAK_SUB_RATE", 0.01)
        self.presence_rate = env_num("SOAK_PRESENCE_RATE", 0.005)
        # absolute rates, per second
        self.trigger_rate = env_num("SOAK_TRIGGER_RATE", 200.0)
        self.client_event_rate = env_num("SOAK_CLIENT_EVENT_RATE", 50.0)
        self.client_event_per_conn = min(10, env_num("SOAK_CLIENT_EVENT_PER_CONN", 5, int))
        # connection ramp
        self.ramp_rate = env_num("SOAK_RAMP_RATE", 1000.0)
        self.ramp_concurrency = env_num("SOAK_RAMP_CONCURRENCY", 200, int)
        self.ramp_timeout = env_num("SOAK_RAMP_TIMEOUT", 180.0)
        # channel layout
        self.public_per_channel = env_num("SOAK_PUBLIC_PER_CHANNEL", 25, int)
        self.presence_fraction = env_num("SOAK_PRESENCE_FRACTION", 0.3)
        self.presence_per_channel = env_num("SOAK_PRESENCE_PER_CHANNEL", 10, int)
        self.private_fraction = env_num("SOAK_PRIVATE_FRACTION", 0.1)
        self.private_per_channel = env_num("SOAK_PRIVATE_PER_CHANNEL", 4, int)
        # verdicts
        self.fd_tolerance = env_num("SOAK_FD_TOLERANCE", 8, int)
        self.slope_limit = env_num("SOAK_SLOPE_LIMIT_MIB_PER_MIN", 1.0)
        self.rss_return_tol = env_num("SOAK_RSS_RETURN_TOLERANCE_MIB", 8.0)
        self.strict_memory = env_num("SOAK_STRICT_MEMORY", 0, int) != 0
        self.min_open_fraction = env_num("SOAK_MIN_OPEN_FRACTION", 0.95)
        self.seed = env_num("SOAK_SEED", 1, int)
        if self.connections < 1 or self.seconds <= 0 or self.sample_every <= 0:
            sys.exit("soak: SOAK_CONNECTIONS, SOAK_SECONDS and SOAK_SAMPLE_SECONDS must be positive")


# ------------------------------------------------------------------------------------------
# /proc sampling


class ProcGone(Exception):
    pass


def read_proc(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        rest = stat[stat.rindex(")") + 2 :].split()  # rest[k] is field k+3 of proc(5)
        if rest[0] in ("Z", "X"):
            raise ProcGone(f"state {rest[0]}")
        ticks = int(rest[11]) + int(rest[12])  # utime + stime
        threads = int(rest[17])
        rss_kib = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kib = int(line.split()[1])
                    break
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcGone(str(e)) from None
    return {"ticks": ticks, "threads": threads, "rss_kib": rss_kib, "fds": fds}


def server_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------
# Pusher signatures


def hmac_hex(message: str) -> str:
    return hmac.new(SECRET, message.encode(), hashlib.sha256).hexdigest()


def channel_auth(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    message = f"{socket_id}:{channel}" if channel_data is None else f"{socket_id}:{channel}:{channel_data}"
    return f"{KEY}:{hmac_hex(message)}"


def rest_url(base: str, path: str, body: str) -> str:
    params = {
        "auth_key": KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body.encode()).hexdigest(),
    }
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    signature = hmac_hex(f"POST\n{path}\n{query}")
    return f"{base}{path}?{query}&auth_signature={signature}"


# ------------------------------------------------------------------------------------------


class Conn(WsClient):
    """One Pusher connection: a slot's current WebSocket and its subscriptions."""

    __slots__ = ("soak", "slot", "socket_id", "established", "subs", "closing", "counted", "ce_window", "ce_count")

    def __init__(self, soak: "Soak", slot: int) -> None:
        super().__init__(HOST, soak.port, soak.ws_path)
        self.soak = soak
        self.slot = slot
        self.socket_id: str | None = None
        self.established: asyncio.Future = asyncio.get_running_loop().create_future()
        self.established.add_done_callback(_retrieve)
        self.subs: dict[str, bool] = {}  # channel -> confirmed
        self.closing = False  # closed on purpose by this script
        self.counted = False  # in soak.slots / open_count
        self.ce_window = 0
        self.ce_count = 0

    def on_text(self, payload: bytes) -> None:
        self.soak.on_message(self, payload)

    def on_lost(self) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectionError(f"closed ({self.close_code}) before connection_established"))
        self.soak.closed(self)


COLUMNS = [
    "t_s", "phase", "rss_mib", "fds", "threads", "cpu_pct", "client_cpu_pct", "conns_open",
    "connects", "disconnects", "aborts", "final_closes", "unexpected_closes", "connect_failures",
    "subscribes", "unsubscribes", "subscribed_ok", "sub_errors",
    "rest_sent", "rest_ok", "rest_failed", "rest_skipped", "rest_expected", "rest_received",
    "client_events_sent", "client_expected", "client_received", "member_events",
    "pings", "pusher_errors", "msgs_received", "loop_lag_max_ms", "rest_ms_mean", "rest_ms_max",
    "loadavg1",
]


class Soak:
    def __init__(self, cfg: Cfg, port: int, pid: int, out_dir: str) -> None:
        self.cfg = cfg
        self.port = port
        self.pid = pid
        self.out_dir = out_dir
        self.ws_path = f"/app/{KEY}?protocol=7&client=poxide-soak&version=1"
        self.http_base = f"http://{HOST}:{port}"
        self.rng = random.Random(cfg.seed)
        n = cfg.connections
        self.slots: list[Conn | None] = [None] * n
        self.opening: set[int] = set()
        self.empty: set[int] = set(range(n))  # slots with no connection
        self.reconnecting: set[int] = set()  # slots a reconnect() is cycling
        self.open_count = 0
        self.peak_open = 0
        self.members: dict[str, set[Conn]] = collections.defaultdict(set)
        self.iv: collections.Counter = collections.Counter()  # this interval
        self.tot: collections.Counter = collections.Counter()  # whole run
        self.codes: collections.Counter = collections.Counter()  # close / error codes
        self.lag_max = 0.0
        self.rest_ms_sum = 0.0  # REST round trips of this interval
        self.rest_ms_max = 0.0
        self.phase = "baseline"
        self.t0 = time.monotonic()
        self.stop = asyncio.Event()  # SIGTERM/SIGINT or server death
        self.stop_reason = ""
        self.server_died = False
        self.tasks: set[asyncio.Task] = set()
        self.samples: list[dict] = []
        self.churn_start = self.churn_end = 0.0
        self.settle_used = 0.0

        # channel layout: every slot has a base public channel; some a private one; some
        # (changing over time) a presence one; some an extra public one.
        self.n_public = max(1, math.ceil(n / max(1, cfg.public_per_channel)))
        n_presence_members = int(n * cfg.presence_fraction)
        self.n_presence = max(1, math.ceil(n_presence_members / max(1, cfg.presence_per_channel)))
        self.private_step = max(1, round(1 / cfg.private_fraction)) if cfg.private_fraction > 0 else 0
        n_private_members = len(range(0, n, self.private_step)) if self.private_step else 0
        self.n_private = max(1, math.ceil(n_private_members / max(1, cfg.private_per_channel)))
        self.private_channels = [f"private-{k}" for k in range(self.n_private)] if self.private_step else []
        self.desired: list[set[str]] = []
        for i in range(n):
            chans = {self.base_public(i)}
            if self.private_step and i % self.private_step == 0:
                chans.add(f"private-{(i // self.private_step) % self.n_private}")
            self.desired.append(chans)
        for i in self.rng.sample(range(n), n_presence_members):
            self.desired[i].add(f"presence-{self.rng.randrange(self.n_presence)}")

    # -- helpers ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def base_public(self, slot: int) -> str:
        return f"public-{slot % self.n_public}"

    def presence_of(self, slot: int) -> str | None:
        for ch in self.desired[slot]:
            if ch.startswith("presence-"):
                return ch
        return None

    def extra_public_of(self, slot: int) -> str | None:
        base = self.base_public(slot)
        for ch in self.desired[slot]:
            if ch.startswith("public-") and ch != base:
                return ch
        return None

    def random_open(self, pred=None, tries: int = 30) -> Conn | None:
        slots = self.slots
        n = len(slots)
        for _ in range(tries):
            c = slots[self.rng.randrange(n)]
            if c is not None and not c.closing and (pred is None or pred(c)):
                return c
        return None

    # -- connections -----------------------------------------------------------------------

    async def open_slot(self, i: int) -> bool:
        if self.slots[i] is not None or i in self.opening or self.stop.is_set():
            return False
        self.opening.add(i)
        loop = asyncio.get_running_loop()
        conn = Conn(self, i)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, HOST, self.port), 15)
            await asyncio.wait_for(asyncio.shield(conn.opened), 15)
            await asyncio.wait_for(asyncio.shield(conn.established), 15)  # set by on_message
        except (OSError, asyncio.TimeoutError, ConnectionError) as e:
            self.iv["connect_failures"] += 1
            self.codes[f"connect failure {type(e).__name__}"] += 1
            conn.closing = True
            conn.abort()
            return False
        finally:
            self.opening.discard(i)
        if self.stop.is_set() or self.slots[i] is not None:
            conn.closing = True
            conn.close()
            return False
        self.slots[i] = conn
        conn.counted = True
        self.empty.discard(i)
        self.open_count += 1
        self.peak_open = max(self.peak_open, self.open_count)
        self.iv["connects"] += 1
        for ch in sorted(self.desired[i]):
            self.subscribe(conn, ch)
        return True

    def subscribe(self, conn: Conn, channel: str) -> None:
        data: dict = {"channel": channel}
        if channel.startswith("private-"):
            data["auth"] = channel_auth(conn.socket_id, channel)
        elif channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": f"u{conn.slot}", "user_info": {"slot": conn.slot}})
            data["auth"] = channel_auth(conn.socket_id, channel, channel_data)
            data["channel_data"] = channel_data
        if conn.send_text(json.dumps({"event": "pusher:subscribe", "data": data})):
            conn.subs[channel] = False
            self.iv["subscribes"] += 1

    def unsubscribe(self, conn: Conn, channel: str) -> None:
        conn.subs.pop(channel, None)
        self.members[channel].discard(conn)
        if conn.send_text(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}})):
            self.iv["unsubscribes"] += 1

    def on_message(self, conn: Conn, raw: bytes) -> None:
        iv = self.iv
        iv["msgs_received"] += 1
        try:
            msg = json.loads(raw)
            ev = msg.get("event")
        except (ValueError, AttributeError):
            iv["bad_frames"] += 1
            return
        if ev == "soak-rest":
            iv["rest_received"] += 1
        elif ev == "client-soak":
            iv["client_received"] += 1
        elif ev == "pusher_internal:member_added" or ev == "pusher_internal:member_removed":
            iv["member_events"] += 1
        elif ev == "pusher_internal:subscription_succeeded":
            ch = msg.get("channel")
            if conn.subs.get(ch) is False:
                conn.subs[ch] = True
                if conn.counted:
                    self.members[ch].add(conn)
            iv["subscribed_ok"] += 1
        elif ev == "pusher:ping":
            iv["pings"] += 1
            conn.send_text(PONG)
        elif ev == "pusher:connection_established":
            try:
                conn.socket_id = json.loads(msg["data"])["socket_id"]
                if not conn.established.done():
                    conn.established.set_result(None)
            except (ValueError, KeyError, TypeError):
                iv["bad_frames"] += 1
        elif ev == "pusher:error":
            iv["pusher_errors"] += 1
            data = msg.get("data") or {}
            code = data.get("code") if isinstance(data, dict) else None
            self.codes[f"pusher:error {code}"] += 1
        elif ev == "pusher:subscription_error":
            iv["sub_errors"] += 1
            self.codes["pusher:subscription_error"] += 1
        else:
            iv["other_events"] += 1

    def closed(self, conn: Conn) -> None:
        if conn.counted:
            conn.counted = False
            if self.slots[conn.slot] is conn:
                self.slots[conn.slot] = None
                self.empty.add(conn.slot)
            self.open_count -= 1
            if not conn.closing:
                self.iv["unexpected_closes"] += 1
                self.codes[f"unexpected close {conn.close_code}"] += 1
        for ch, ok in conn.subs.items():
            if ok:
                self.members[ch].discard(conn)
        conn.subs.clear()

    async def close_conn(self, conn: Conn, abort: bool, counter: str = "disconnects") -> None:
        conn.closing = True
        if abort:
            self.iv["aborts"] += 1
            conn.abort()  # TCP gone without a close handshake
        else:
            self.iv[counter] += 1
            conn.close()
            try:
                await asyncio.wait_for(asyncio.shield(conn.done), 10)
            except asyncio.TimeoutError:
                self.codes["close handshake timed out"] += 1
                conn.abort()

    async def reconnect(self, conn: Conn) -> None:
        self.reconnecting.add(conn.slot)
        try:
            await self.close_conn(conn, abort=self.rng.random() < self.cfg.abort_fraction)
            await asyncio.sleep(self.rng.uniform(0.0, 0.5))
            await self.open_slot(conn.slot)
        finally:
            self.reconnecting.discard(conn.slot)

    # -- load ------------------------------------------------------------------------------

    async def ramp(self) -> None:
        cfg = self.cfg
        sem = asyncio.Semaphore(cfg.ramp_concurrency)
        deadline = self.now() + cfg.ramp_timeout

        async def one(i: int) -> None:
            async with sem:
                for attempt in range(3):
                    if self.stop.is_set() or self.now() > deadline:
                        return
                    if await self.open_slot(i):
                        return
                    await asyncio.sleep(0.5 * (attempt + 1))

        pending = []
        start = self.now()
        for i in range(cfg.connections):
            if self.stop.is_set() or self.now() > deadline:
                break
            pending.append(self.spawn(one(i)))
            ahead = (i + 1) / cfg.ramp_rate - (self.now() - start)
            if ahead > 0.01:
                await asyncio.sleep(ahead)
        if pending:
            await asyncio.wait(pending, timeout=max(1.0, deadline - self.now()))
        # let the subscriptions of the last connections be confirmed
        for _ in range(50):
            if self.stop.is_set() or not any(
                not ok for c in self.slots if c is not None for ok in c.subs.values()
            ):
                break
            await asyncio.sleep(0.1)

    async def churn_loop(self) -> None:
        cfg, n = self.cfg, self.cfg.connections
        tick = 0.1
        acc = collections.Counter()
        max_inflight = max(20, int(n * cfg.reconnect_rate * 5))
        inflight = set()
        next_t = time.monotonic()
        while not self.stop.is_set() and self.now() < self.churn_end:
            next_t += tick
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            acc["reconnect"] += n * cfg.reconnect_rate * tick
            acc["sub"] += n * cfg.sub_rate * tick
            acc["presence"] += n * cfg.presence_rate * tick

            k = int(acc["reconnect"])
            acc["reconnect"] -= k
            for _ in range(k):
                if len(inflight) >= max_inflight:
                    self.iv["churn_skipped"] += 1
                    continue
                conn = self.random_open()
                if conn is not None:
                    t = self.spawn(self.reconnect(conn))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
            # slots emptied by unexpected closes or failed reconnects come back at the same pace
            refill = max(1, k)
            for i in list(self.empty):
                if refill == 0:
                    break
                if i not in self.opening and i not in self.reconnecting:
                    refill -= 1
                    self.iv["refills"] += 1
                    t = self.spawn(self.open_slot(i))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)

            k = int(acc["sub"])
            acc["sub"] -= k
            for _ in range(k):  # toggle an extra public subscription
                conn = self.random_open()
                if conn is None:
                    continue
                extra = self.extra_public_of(conn.slot)
                if extra is not None:
                    self.desired[conn.slot].discard(extra)
                    self.unsubscribe(conn, extra)
                else:
                    ch = f"public-{self.rng.randrange(self.n_public)}"
                    if ch == self.base_public(conn.slot):
                        continue
                    self.desired[conn.slot].add(ch)
                    self.subscribe(conn, ch)

            k = int(acc["presence"])
            acc["presence"] -= k
            for _ in range(k):  # one member leaves, another connection joins: steady count
                leaver = self.random_open(lambda c: self.presence_of(c.slot) in c.subs)
                if leaver is not None:
                    ch = self.presence_of(leaver.slot)
                    self.desired[leaver.slot].discard(ch)
                    self.unsubscribe(leaver, ch)
                joiner = self.random_open(lambda c: self.presence_of(c.slot) is None)
                if joiner is not None:
                    ch = f"presence-{self.rng.randrange(self.n_presence)}"
                    self.desired[joiner.slot].add(ch)
                    self.subscribe(joiner, ch)
        if inflight:
            await asyncio.wait(list(inflight), timeout=20)

    async def paced(self, rate: float, max_inflight: int, make, skipped_key: str) -> None:
        """Calls make() `rate` times a second until the churn ends, at most max_inflight at once."""
        if rate <= 0:
            return
        inflight: set[asyncio.Task] = set()
        start = time.monotonic()
        issued = 0
        while not self.stop.is_set() and self.now() < self.churn_end:
            await asyncio.sleep(0.02)
            due = int(rate * (time.monotonic() - start)) - issued
            for _ in range(due):
                issued += 1
                if len(inflight) >= max_inflight:
                    self.iv[skipped_key] += 1
                    continue
                coro = make()
                if coro is None:
                    continue
                t = self.spawn(coro)
                inflight.add(t)
                t.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(list(inflight), timeout=15)

    def make_trigger(self, session: aiohttp.ClientSession):
        r = self.rng.random()
        if r < 0.8:
            channels = [f"public-{self.rng.randrange(self.n_public)}"]
        elif r < 0.9:
            channels = [f"public-{c}" for c in self.rng.sample(range(self.n_public), min(self.n_public, self.rng.randint(2, 3)))]
        else:
            channels = [f"presence-{self.rng.randrange(self.n_presence)}"]
        expected = sum(len(self.members[ch]) for ch in channels)
        seq = self.tot["rest_sent"] + self.iv["rest_sent"]
        data = json.dumps({"seq": seq, "pad": "x" * self.rng.randrange(0, 256)})
        body = json.dumps({"name": "soak-rest", "channels": channels, "data": data})
        self.iv["rest_sent"] += 1
        return self.trigger(session, body, expected)

    async def trigger(self, session: aiohttp.ClientSession, body: str, expected: int) -> None:
        url = rest_url(self.http_base, f"/apps/{APP_ID}/events", body)
        t = time.monotonic()
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                ms = (time.monotonic() - t) * 1000
                self.rest_ms_sum += ms
                self.rest_ms_max = max(self.rest_ms_max, ms)
                if resp.status == 200:
                    self.iv["rest_ok"] += 1
                    self.iv["rest_expected"] += expected
                    return
                self.codes[f"REST HTTP {resp.status}"] += 1
        except Exception as e:
            self.codes[f"REST {type(e).__name__}"] += 1
        self.iv["rest_failed"] += 1

    def make_client_event(self):
        if not self.private_channels:
            return None
        sec = int(time.monotonic())
        limit = self.cfg.client_event_per_conn
        for _ in range(10):
            ch = self.rng.choice(self.private_channels)
            group = self.members.get(ch)
            if not group:
                continue
            sender = self.rng.choice(tuple(group))
            if sender.closing:
                continue
            if sender.ce_window != sec:
                sender.ce_window, sender.ce_count = sec, 0
            if sender.ce_count >= limit:
                continue
            sender.ce_count += 1
            self.iv["client_events_sent"] += 1
            self.iv["client_expected"] += len(group) - 1  # not echoed to the sender
            frame = json.dumps({"event": "client-soak", "channel": ch, "data": {"from": sender.slot}})
            sender.send_text(frame)
            return None
        self.iv["client_events_skipped"] += 1
        return None

    async def close_all(self) -> None:
        sem = asyncio.Semaphore(500)

        async def one(c: Conn) -> None:
            async with sem:
                await self.close_conn(c, abort=False, counter="final_closes")

        conns = [c for c in self.slots if c is not None and not c.closing]
        if conns:
            done, pending = await asyncio.wait([self.spawn(one(c)) for c in conns], timeout=60)
            for t in pending:
                t.cancel()
        for c in self.slots:  # whatever is left: drop the TCP connection
            if c is not None:
                c.closing = True
                c.abort()
        await asyncio.sleep(0.5)

    # -- sampling --------------------------------------------------------------------------

    def boundary_sample(self) -> None:
        """Samples at a phase change (unless the grid just did), so each row's interval lies in one phase."""
        if not self.samples or self.now() - self.samples[-1]["_t"] >= 1.0:
            self.sample()

    def sample(self) -> dict | None:
        t_wall = self.now()
        cpu_self = os.times()
        try:
            p = read_proc(self.pid)
        except ProcGone as e:
            if not self.server_died:
                self.server_died = True
                self.stop_reason = f"server (pid {self.pid}) died: {e}"
                self.stop.set()
            return None
        prev = self.samples[-1] if self.samples else None
        row = {c: 0 for c in COLUMNS}
        row.update({k: v for k, v in self.iv.items() if k in row})
        dt = t_wall - prev["_t"] if prev else 0.0
        row.update(
            t_s=round(t_wall, 2),
            phase=self.phase,
            rss_mib=round(p["rss_kib"] / 1024, 2),
            fds=p["fds"],
            threads=p["threads"],
            cpu_pct=round((p["ticks"] - prev["_ticks"]) / CLK_TCK / dt * 100, 1) if dt > 0 else 0.0,
            client_cpu_pct=round(
                ((cpu_self.user + cpu_self.system) - prev["_self"]) / dt * 100, 1
            ) if dt > 0 else 0.0,
            conns_open=self.open_count,
            loop_lag_max_ms=round(self.lag_max * 1000, 1),
            rest_ms_mean=round(self.rest_ms_sum / (self.iv["rest_ok"] + self.iv["rest_failed"]), 1)
            if self.iv["rest_ok"] + self.iv["rest_failed"] else 0.0,
            rest_ms_max=round(self.rest_ms_max, 1),
            loadavg1=os.getloadavg()[0],
        )
        row["_t"], row["_ticks"], row["_self"] = t_wall, p["ticks"], cpu_self.user + cpu_self.system
        self.tot.update(self.iv)
        self.iv.clear()
        self.lag_max = 0.0
        self.rest_ms_sum = self.rest_ms_max = 0.0
        self.samples.append(row)
        self.writer.writerow({c: row[c] for c in COLUMNS})
        self.csv_file.flush()
        return row

    async def sampler(self) -> None:
        k = 1
        while True:
            await asyncio.sleep(max(0.0, k * self.cfg.sample_every - self.now()))
            k += 1
            self.sample()

    async def lag_probe(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.lag_max = max(self.lag_max, time.monotonic() - t - 0.05)

    async def watch_server(self) -> None:
        while not self.stop.is_set():
            if not server_alive(self.pid):
                self.server_died = True
                self.stop_reason = f"server (pid {self.pid}) died"
                self.stop.set()
            await asyncio.sleep(0.5)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()

        def on_signal(name: str) -> None:
            if not self.stop.is_set():
                self.stop_reason = f"stopped by {name}"
                self.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)

        os.makedirs(self.out_dir, exist_ok=True)
        self.csv_path = os.path.join(self.out_dir, "soak.csv")
        self.csv_file = open(self.csv_path, "w", newline="")
        self.writer = csv.DictWriter(self.csv_file, fieldnames=COLUMNS)
        self.writer.writeheader()

        print(
            f"soak: {cfg.connections} connections, {cfg.seconds:g} s of churn, server pid {self.pid} "
            f"port {self.port}; {self.n_public} public, {self.n_presence} presence, "
            f"{len(self.private_channels)} private channels",
            flush=True,
        )
        if self.sample() is None:
            print(f"soak: {self.stop_reason}", file=sys.stderr)
            return 1
        background = [self.spawn(self.sampler()), self.spawn(self.lag_probe()), self.spawn(self.watch_server())]

        self.phase = "ramp"
        await self.ramp()
        ramp_s = self.now()
        self.boundary_sample()
        print(f"soak: ramp done in {ramp_s:.1f} s: {self.open_count} of {cfg.connections} open", flush=True)

        gc.collect()
        gc.freeze()  # the connections' long-lived objects: keep them out of later collections
        connector = aiohttp.TCPConnector(limit=64, force_close=False)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10))
        self.phase = "churn"
        self.churn_start = self.now()
        self.churn_end = self.churn_start + cfg.seconds
        churn_tasks = [
            self.spawn(self.churn_loop()),
            self.spawn(self.paced(cfg.trigger_rate, 400, lambda: self.make_trigger(session), "rest_skipped")),
            self.spawn(self.paced(cfg.client_event_rate, 256, self.make_client_event, "client_events_skipped")),
        ]
        progress_every = max(cfg.sample_every, 60.0)
        next_progress = self.churn_start + progress_every
        while not self.stop.is_set() and self.now() < self.churn_end:
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=min(1.0, max(0.01, self.churn_end - self.now())))
            except asyncio.TimeoutError:
                pass
            if self.now() >= next_progress and self.samples:
                s = self.samples[-1]
                print(
                    f"soak: t={s['t_s']:.0f}s rss={s['rss_mib']:.1f} MiB fds={s['fds']} cpu={s['cpu_pct']}% "
                    f"open={s['conns_open']} rest_received={s['rest_received']}",
                    flush=True,
                )
                next_progress += progress_every
        self.churn_end = min(self.churn_end, self.now())  # ends the loops early on a stop
        await asyncio.wait(churn_tasks, timeout=30)
        self.churn_end = self.now()
        self.boundary_sample()

        self.phase = "close"
        if not self.server_died:
            await self.close_all()
        await session.close()
        for t in list(self.tasks):
            if t not in background:
                t.cancel()
        self.boundary_sample()
        self.phase = "settle"
        settle = 0 if self.server_died else (min(cfg.settle, 5) if self.stop_reason else cfg.settle)
        self.settle_used = settle
        settle_until = self.now() + settle
        while self.now() < settle_until and not self.server_died:
            await asyncio.sleep(min(0.5, settle_until - self.now()))
        for t in background:
            t.cancel()
        self.phase = "final"
        self.sample()
        self.csv_file.close()
        return self.report(ramp_s)

    # -- summary ---------------------------------------------------------------------------

    def report(self, ramp_s: float) -> int:
        cfg = self.cfg
        self.tot.update(self.iv)  # traffic since the last sample (if the server died, all of it)
        self.iv.clear()
        tot = self.tot
        rows = self.samples
        base = rows[0]
        final = rows[-1] if rows[-1]["phase"] == "final" else None
        peak = max(rows, key=lambda r: r["rss_mib"])
        peak_fd = max(rows, key=lambda r: r["fds"])
        churn = [r for r in rows if r["phase"] == "churn"]
        lines = []
        out = lines.append
        failures: list[str] = []
        warnings: list[str] = []

        churn_s = self.churn_end - self.churn_start
        out("== poxide soak summary ==")
        out(
            f"load: {cfg.connections} connections wanted, {self.peak_open} open at peak (ramp {ramp_s:.1f} s), "
            f"{churn_s:.0f} s of churn, samples every {cfg.sample_every:g} s"
        )
        out(
            f"churn: {tot['connects']} connects, {tot['disconnects']} clean closes + {tot['aborts']} TCP aborts "
            f"(+ {tot['final_closes']} closes at the end), {tot['unexpected_closes']} unexpected closes, "
            f"{tot['connect_failures']} connect failures"
        )
        out(
            f"subscriptions: {tot['subscribes']} subscribes ({tot['subscribed_ok']} confirmed, {tot['sub_errors']} errors), "
            f"{tot['unsubscribes']} unsubscribes, {tot['member_events']} presence member events received"
        )
        ratio = tot["rest_received"] / tot["rest_expected"] if tot["rest_expected"] else float("nan")
        out(
            f"REST: {tot['rest_sent']} triggers ({tot['rest_sent'] / churn_s if churn_s else 0:.0f}/s), "
            f"{tot['rest_ok']} ok, {tot['rest_failed']} failed, {tot['rest_skipped']} skipped; "
            f"{tot['rest_received']} deliveries of ~{tot['rest_expected']} expected ({ratio:.3f})"
        )
        answered = sum(r["rest_ok"] + r["rest_failed"] for r in rows)
        if answered:
            mean_ms = sum(r["rest_ms_mean"] * (r["rest_ok"] + r["rest_failed"]) for r in rows) / answered
            out(f"REST round trip: mean {mean_ms:.1f} ms, max {max(r['rest_ms_max'] for r in rows):.1f} ms")
        cratio = tot["client_received"] / tot["client_expected"] if tot["client_expected"] else float("nan")
        out(
            f"client events: {tot['client_events_sent']} sent, {tot['client_received']} delivered of "
            f"~{tot['client_expected']} expected ({cratio:.3f}); {tot['pings']} server pings answered, "
            f"{tot['pusher_errors']} pusher:error"
        )
        if self.codes:
            out("codes: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.codes.items())))
        if churn:
            out(
                f"client: peak event-loop lag {max(r['loop_lag_max_ms'] for r in churn):.0f} ms, "
                f"mean CPU {sum(r['client_cpu_pct'] for r in churn) / len(churn):.0f}% of a core"
            )
            out(
                f"server CPU during churn: mean {sum(r['cpu_pct'] for r in churn) / len(churn):.1f}%, "
                f"peak {max(r['cpu_pct'] for r in churn):.1f}% of one core"
            )
        end_txt = f"{final['rss_mib']:.1f} MiB (after close + {self.settle_used:g} s)" if final else "n/a"
        out(
            f"RSS: start {base['rss_mib']:.1f} MiB, peak {peak['rss_mib']:.1f} MiB (t={peak['t_s']:.0f} s, "
            f"{peak['phase']}), end {end_txt}"
        )
        if self.peak_open:
            out(f"RSS per open connection at the peak: {(peak['rss_mib'] - base['rss_mib']) * 1024 / self.peak_open:.0f} KiB")
        if final:
            out(
                f"descriptors: start {base['fds']}, peak {peak_fd['fds']}, end {final['fds']} "
                f"(allowed: start + {cfg.fd_tolerance})"
            )

        # memory: slope over the second half of the churn, and the final sample vs the start
        half = self.churn_start + churn_s / 2
        second = [r for r in churn if r["t_s"] >= half]
        memory_ok = True
        checks: list[str] = []
        if len(second) >= 5:
            checks.append("slope")
            xs = [r["t_s"] / 60 for r in second]
            ys = [r["rss_mib"] for r in second]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
            residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
            se = math.sqrt(residual / (len(xs) - 2) / sxx)  # standard error of the slope
            # RSS follows the number of open connections, which churn moves up and down: growth
            # counts only if it is over the limit and clear of that noise (two standard errors).
            if slope > cfg.slope_limit and slope > 2 * se:
                verdict = "GROWING"
                memory_ok = False
            elif abs(slope) <= cfg.slope_limit:
                verdict = "flat"
            elif slope < 0:
                verdict = "shrinking"
            else:
                verdict = "flat within noise"
            out(
                f"memory, second half of churn: slope {slope:+.3f} ± {se:.3f} MiB/min over {len(second)} samples "
                f"({ys[0]:.1f} -> {ys[-1]:.1f} MiB; limit {cfg.slope_limit:g}) -> {verdict}"
            )
        else:
            if len(second) >= 2:
                slope = (second[-1]["rss_mib"] - second[0]["rss_mib"]) / ((second[-1]["t_s"] - second[0]["t_s"]) / 60)
                detail = f"{slope:+.3f} MiB/min from {len(second)} samples"
            else:
                detail = f"{len(second)} samples"
            out(
                f"memory, second half of churn: inconclusive ({detail}; a slope verdict needs >= 5 samples, "
                f"i.e. SOAK_SECONDS >= {10 * cfg.sample_every:g})"
            )
        if final:
            grown = peak["rss_mib"] - base["rss_mib"]
            kept = final["rss_mib"] - base["rss_mib"]
            allowed = max(cfg.rss_return_tol, 0.5 * grown)
            back = kept <= allowed
            memory_ok &= back
            checks.append("after close")
            share = f", {100 * kept / grown:.0f}% of the growth to the peak" if grown > 0.5 else ""
            out(
                f"memory after close: end - start = {kept:+.1f} MiB{share} (allowed {allowed:.1f}) -> "
                + ("within tolerance of the start" if back else "NOT back near the start")
            )
        if checks:
            basis = "" if len(checks) == 2 else f" (from the {checks[0]} check only)"
            out("memory ended flat: " + ("yes" if memory_ok else "NO") + basis)
        else:
            out("memory ended flat: unknown (too few samples)")

        if self.server_died:
            failures.append(self.stop_reason or "server died")
        elif self.stop_reason:
            failures.append(self.stop_reason)
        if final and final["fds"] > base["fds"] + cfg.fd_tolerance:
            failures.append(f"descriptors did not return: {final['fds']} at the end vs {base['fds']} at the start")
        if self.peak_open < cfg.min_open_fraction * cfg.connections:
            failures.append(f"only {self.peak_open} of {cfg.connections} connections opened")
        if not memory_ok and cfg.strict_memory:
            failures.append("memory did not end flat (SOAK_STRICT_MEMORY=1)")
        if tot["rest_expected"] and ratio < 0.95:
            warnings.append(f"REST delivery ratio {ratio:.3f} < 0.95")
        if tot["rest_skipped"] > 0.01 * max(1, tot["rest_sent"] + tot["rest_skipped"]):
            warnings.append(
                f"{tot['rest_skipped']} REST triggers skipped (400 in flight): the REST rate fell short"
            )
        if tot["unexpected_closes"]:
            warnings.append(f"{tot['unexpected_closes']} unexpected closes")
        if tot["reader_errors"]:
            warnings.append(f"{tot['reader_errors']} client reader errors")
        if churn and max(r["loop_lag_max_ms"] for r in churn) > 1000:
            warnings.append("client event loop lagged > 1 s: the client may have been the bottleneck")
        if churn and max(r["loadavg1"] for r in churn) > os.cpu_count() + 1:
            warnings.append(
                f"machine load average reached {max(r['loadavg1'] for r in churn):.1f} on {os.cpu_count()} cores: "
                "something else competed for the CPU, rates and latencies are not representative"
            )
        for w in warnings:
            out(f"warning: {w}")
        out(f"files: {self.csv_path}, {os.path.join(self.out_dir, 'soak.png')}")
        out("result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))

        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import plot

            plot.plot(self.csv_path, os.path.join(self.out_dir, "soak.png"))
        except Exception as e:
            lines.insert(-1, f"warning: plot failed: {type(e).__name__}: {e}")
        text = "\n".join(lines)
        print(text, flush=True)
        with open(os.path.join(self.out_dir, "summary.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(self.out_dir, "totals.json"), "w") as f:
            json.dump({"totals": dict(tot), "codes": dict(self.codes), "failures": failures}, f, indent=1, sort_keys=True)
        return 0 if not failures else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's pid (sampled in /proc)")
    ap.add_argument("--out", required=True, help="directory for soak.csv, soak.png, summary.txt")
    args = ap.parse_args()
    cfg = Cfg()
    soak = Soak(cfg, args.port, args.pid, args.out)
    # Hard deadline, whatever happens inside: ramp + churn + close + settle + slack.
    budget = cfg.ramp_timeout + cfg.seconds + 60 + 30 + 20 + cfg.settle + 60

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(soak.run(), timeout=budget)
        except asyncio.TimeoutError:
            print(f"soak: hard deadline of {budget:.0f} s passed; giving up", file=sys.stderr)
            return 1

    if os.environ.get("SOAK_PROFILE"):  # debugging the client itself: cProfile into the out dir
        import cProfile
        import pstats

        prof = cProfile.Profile()
        rc = prof.runcall(asyncio.run, bounded())
        with open(os.path.join(args.out, "client-profile.txt"), "w") as f:
            pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(40)
        return rc
    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
