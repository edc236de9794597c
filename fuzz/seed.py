#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/<target>/ (deterministic output).

    python3 fuzz/seed.py            # from anywhere; rewrites the generated files

Seeds come from the conformance transcripts (frames the clients send, REST bodies), from the
README's TOML example, and from hand-built inputs below: masked client-to-server WebSocket
frames, signed REST requests. Generated files have readable names; files libFuzzer adds to a
corpus (40-hex SHA-1 names) are left alone unless --clean is passed, which empties each
target directory first.
"""
import hashlib
import hmac
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSCRIPTS = os.path.join(ROOT, "conformance", "transcripts")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

KEY, SECRET, APP_ID = "app_key", "secret", "app_id"
TIMESTAMP = "1700000000"  # rest_request seeds are signed for this auth_timestamp
MAX_SEED = 8192  # bytes per seed file


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= MAX_SEED, (target, name, len(data))
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- conformance templates -------------------------------------------------------------------

def sign(secret, message):
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def expand(text):
    """Replaces the transcript placeholders with plausible concrete values."""
    def repl(m):
        body = m.group(1)
        if body.startswith("repeat:"):
            _, n, piece = body.split(":", 2)
            return piece * min(int(n), 64)  # keep seeds small; the fuzzer can grow them
        fixed = {"app_id": APP_ID, "key": KEY, "secret": SECRET,
                 "app2_id": "app2", "key2": "app2_key", "secret2": "secret2"}
        if body in fixed:
            return fixed[body]
        if body.startswith("socket_id:"):
            return "1234.5678"
        if body.startswith("var:"):
            return KEY + ":" + sign(SECRET, "1234.5678:" + body[4:])
        return m.group(0)
    return re.sub(r"\{\{([^{}]*)\}\}", repl, text)


def expand_json(value):
    if isinstance(value, str):
        return expand(value)
    if isinstance(value, list):
        return [expand_json(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_json(v) for k, v in value.items()}
    return value


def transcript_steps():
    for fname in sorted(os.listdir(TRANSCRIPTS)):
        if not fname.endswith(".jsonl"):
            continue
        with open(os.path.join(TRANSCRIPTS, fname), encoding="utf-8") as f:
            lines = [l.strip() for l in f]
        lines = [l for l in lines if l and not l.startswith("//")]
        for line in lines[1:]:
            yield fname[:-6], json.loads(line)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- client_frame: what the clients send in the transcripts ----------------------------------

def client_frames():
    by_kind = {}
    for scenario, step in transcript_steps():
        if "send" not in step:
            continue
        if "frame" in step:
            text = compact(expand_json(step["frame"]))
            kind = str(step["frame"].get("event")) if isinstance(step["frame"], dict) else "other"
        elif "text" in step:
            text, kind = expand(step["text"]), "raw"
        elif "binary" in step:
            text, kind = expand(step["binary"]), "binary"
        else:
            continue
        if len(text.encode()) > MAX_SEED:
            continue
        by_kind.setdefault(kind, {}).setdefault(text, scenario)
    # A few of each event kind (shortest first, so the corpus stays small), all raw texts.
    for kind, texts in sorted(by_kind.items()):
        limit = 30 if kind == "raw" else 4
        for i, text in enumerate(sorted(texts, key=lambda t: (len(t), t))[:limit]):
            label = re.sub(r"\{\{repeat:(\d+):.*?\}\}", r"repeat\1", kind)
            label = label.replace("pusher:", "").replace("pusher_internal:", "internal-")[:32]
            write("client_frame", f"{label}-{i}", text)
    # Shapes the transcripts do not send.
    write("client_frame", "x-data-as-string",
          '{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}')
    write("client_frame", "x-unicode-escapes",
          '{"event":"client-\\u00e9","channel":"private-\\ud83d\\ude00","data":"\\u0000"}')
    write("client_frame", "x-deep-nesting", '{"event":"client-e","channel":"private-a","data":'
          + "[" * 64 + "]" * 64 + "}")
    write("client_frame", "x-duplicate-keys", '{"event":"pusher:ping","event":"pusher:pong","data":{}}')
    write("client_frame", "x-big-number", '{"event":"pusher:ping","data":1e999999}')


# --- websocket_frames: masked client-to-server frames ----------------------------------------

MASKS = [b"\x37\xfa\x21\x3d", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78"]


def ws_frame(opcode, payload, fin=True, mask=MASKS[0], rsv=0, masked=True, force_len=None):
    """One WebSocket frame as a client sends it (RFC 6455 5.2): masked unless masked=False."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if force_len is None else force_len
    mbit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not masked:
        return head + payload
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + body


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
SUB = '{"event":"pusher:subscribe","data":{"channel":"news"}}'
PING_FRAME = '{"event":"pusher:ping","data":{}}'


def websocket_frames():
    # fuzzing::websocket_frames takes the first byte as the size of the chunks it feeds the
    # decoder (0 counts as 1); the rest is the byte stream. 0xff: whole frames at once here.
    def w(name, *frames, chunk=0xFF):
        write("websocket_frames", name, bytes([chunk]) + b"".join(frames))
    w("text-subscribe", ws_frame(TEXT, SUB))
    w("text-ping-event", ws_frame(TEXT, PING_FRAME, mask=MASKS[3]))
    w("text-empty", ws_frame(TEXT, b""))
    w("text-zero-mask", ws_frame(TEXT, SUB, mask=MASKS[1]))
    w("text-len16", ws_frame(TEXT, '{"event":"client-e","channel":"private-a","data":"'
                              + "x" * 200 + '"}'))
    w("text-len64-header", ws_frame(TEXT, b"", force_len=1 << 16)[:14])  # claims 64 KiB, no body
    w("text-len64-huge", ws_frame(TEXT, b"", force_len=(1 << 63) - 1) + b"abcd")
    w("text-invalid-utf8", ws_frame(TEXT, b"\xc3\x28\xa0\xa1"))
    w("text-unmasked", ws_frame(TEXT, SUB, masked=False))
    w("text-rsv1", ws_frame(TEXT, SUB, rsv=4))
    w("binary", ws_frame(BINARY, SUB))
    w("ping", ws_frame(PING, "abc"))
    w("ping-empty", ws_frame(PING, b""))
    w("ping-125", ws_frame(PING, "p" * 125))
    w("ping-126-too-long", ws_frame(PING, "p" * 126))
    w("ping-fragmented", ws_frame(PING, "abc", fin=False))
    w("pong", ws_frame(PONG, "abc"))
    w("close-1000", ws_frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    w("close-empty", ws_frame(CLOSE, b""))
    w("close-1-byte", ws_frame(CLOSE, b"\x03"))
    w("close-bad-code", ws_frame(CLOSE, struct.pack("!H", 999)))
    w("close-bad-utf8", ws_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"))
    w("opcode-reserved-3", ws_frame(0x3, b"x"))
    w("opcode-reserved-b", ws_frame(0xB, b"x"))
    # Fragmented messages: text split in three, with a ping interleaved; and broken sequences.
    a, b, c = SUB[:10], SUB[10:30], SUB[30:]
    w("fragmented-text", ws_frame(TEXT, a, fin=False), ws_frame(CONT, b, fin=False, mask=MASKS[2]),
      ws_frame(CONT, c, mask=MASKS[3]))
    w("fragmented-with-ping", ws_frame(TEXT, a, fin=False), ws_frame(PING, "mid"),
      ws_frame(CONT, b + c))
    w("fragmented-utf8-split", ws_frame(TEXT, "é€".encode()[:3], fin=False),
      ws_frame(CONT, "é€".encode()[3:]))
    w("continuation-without-start", ws_frame(CONT, SUB))
    w("text-during-fragment", ws_frame(TEXT, a, fin=False), ws_frame(TEXT, b))
    w("fragmented-binary", ws_frame(BINARY, b"\x00\x01", fin=False), ws_frame(CONT, b"\x02"))
    w("truncated-mask", ws_frame(TEXT, SUB)[:4])
    w("truncated-payload", ws_frame(TEXT, SUB)[:20])
    # A session: subscribe, ping event, websocket ping, close.
    w("session", ws_frame(TEXT, SUB), ws_frame(TEXT, PING_FRAME, mask=MASKS[2]),
      ws_frame(PING, b""), ws_frame(CLOSE, struct.pack("!H", 1000)))
    # The same streams split into small chunks: headers and payloads cut at every point.
    w("session-chunk1", ws_frame(TEXT, SUB), ws_frame(PING, b""),
      ws_frame(CLOSE, struct.pack("!H", 1000)), chunk=1)
    w("fragmented-text-chunk3", ws_frame(TEXT, a, fin=False), ws_frame(CONT, b, fin=False),
      ws_frame(CONT, c), chunk=3)
    w("text-len16-chunk7", ws_frame(TEXT, "y" * 300), chunk=7)
    w("over-4096-cap", ws_frame(TEXT, b"", force_len=4097) + b"z" * 8)
    w("fragments-over-cap", ws_frame(TEXT, "a" * 2100, fin=False), ws_frame(CONT, "b" * 2100))


# --- rest_request: METHOD \n PATH \n QUERY \n BODY --------------------------------------------

def signed_query(method, path, body, extra=(), key=KEY, secret=SECRET, timestamp=TIMESTAMP,
                 override=None, sign_overrides=False):
    """The query of a signed request; `override` replaces (None: removes) parameters after
    signing, or before it with sign_overrides=True (a valid signature, one bad parameter)."""
    params = list(extra) + [("auth_key", key), ("auth_timestamp", timestamp),
                            ("auth_version", "1.0")]
    if body:
        params.append(("body_md5", hashlib.md5(body.encode()).hexdigest()))

    def apply(params):
        return [(k, override.get(k, v)) for k, v in params if override.get(k, v) is not None]
    if override and sign_overrides:
        params = apply(params)
    to_sign = "&".join(f"{k.lower()}={v}" for k, v in
                       sorted((k.lower(), v) for k, v in params if k != "auth_signature"))
    params.append(("auth_signature", sign(secret, f"{method.upper()}\n{path}\n{to_sign}")))
    if override and not sign_overrides:
        params = apply(params)
    return "&".join(f"{k}={v}" for k, v in params)


def rest_request_seed(name, method, path, body="", **kw):
    query = kw.pop("query", None)
    if query is None:
        query = signed_query(method, path, body, **kw)
    write("rest_request", name, f"{method}\n{path}\n{query}\n{body}")


TRIGGER = '{"name":"e","channel":"c","data":"{}"}'
BATCH = '{"batch":[{"name":"e","channel":"a","data":"1"},{"name":"f","channel":"b","data":"2"}]}'


def rest_request():
    ev = f"/apps/{APP_ID}/events"
    rest_request_seed("trigger", "POST", ev, TRIGGER)
    rest_request_seed("batch", "POST", f"/apps/{APP_ID}/batch_events", BATCH)
    rest_request_seed("get-channels", "GET", f"/apps/{APP_ID}/channels",
                      extra=[("filter_by_prefix", "presence-"), ("info", "user_count")])
    rest_request_seed("get-channel", "GET", f"/apps/{APP_ID}/channels/presence-room",
                      extra=[("info", "user_count,subscription_count")])
    rest_request_seed("get-users", "GET", f"/apps/{APP_ID}/channels/presence-room/users")
    rest_request_seed("terminate", "POST", f"/apps/{APP_ID}/users/1/terminate_connections", "{}")
    rest_request_seed("percent-encoded-path", "GET", f"/apps/{APP_ID}/channels/private-a%3Ab")
    rest_request_seed("uppercase-param", "GET", f"/apps/{APP_ID}/channels",
                      extra=[("Info", "user_count")])
    rest_request_seed("lowercase-method", "post", ev, TRIGGER)
    rest_request_seed("wrong-secret", "POST", ev, TRIGGER, secret="nope")
    rest_request_seed("wrong-key", "POST", ev, TRIGGER, key="other")
    rest_request_seed("bad-version", "POST", ev, TRIGGER, override={"auth_version": "2.0"})
    rest_request_seed("bad-timestamp", "POST", ev, TRIGGER, override={"auth_timestamp": "-1e9"})
    rest_request_seed("old-timestamp", "POST", ev, TRIGGER, timestamp="0")
    zeros = "00000000000000000000000000000000"
    rest_request_seed("md5-wrong", "POST", ev, TRIGGER, override={"body_md5": zeros},
                      sign_overrides=True)
    rest_request_seed("md5-wrong-unsigned", "POST", ev, TRIGGER, override={"body_md5": zeros})
    rest_request_seed("md5-uppercase", "POST", ev, TRIGGER, sign_overrides=True, override={
        "body_md5": hashlib.md5(TRIGGER.encode()).hexdigest().upper()})
    rest_request_seed("md5-missing", "POST", ev, TRIGGER, override={"body_md5": None},
                      sign_overrides=True)
    rest_request_seed("signature-missing", "POST", ev, TRIGGER, override={"auth_signature": None})
    rest_request_seed("unknown-app", "POST", "/apps/nope/events", TRIGGER)
    rest_request_seed("duplicate-params", "GET", f"/apps/{APP_ID}/channels",
                      query="auth_key=app_key&auth_key=x&auth_timestamp=1700000000"
                            "&auth_version=1.0&auth_signature=00")
    rest_request_seed("escaped-query", "GET", f"/apps/{APP_ID}/channels",
                      query="auth_key=app%5Fkey&auth_timestamp=%31700000000&auth_version=1%2E0"
                            "&auth_signature=%zz&info=a+b&&=&x")
    rest_request_seed("empty", "", "", query="")
    rest_request_seed("worked-example", "POST", "/apps/3/events",
                      '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}',
                      key="278d425bdf160c739803", secret="7ad3773142a6692b25b8",
                      timestamp="1353088179")


# --- rest_bodies: events and batch_events bodies ---------------------------------------------

def rest_bodies():
    seen = set()
    for scenario, step in transcript_steps():
        rest = step.get("rest")
        if not isinstance(rest, dict) or not str(rest.get("path", "")).endswith("events"):
            continue
        if "body" in rest:
            text = compact(expand_json(rest["body"]))
        elif "body_text" in rest:
            text = expand(rest["body_text"])
        else:
            continue
        if len(text) > MAX_SEED or text in seen or len(seen) >= 40:
            continue
        seen.add(text)
        write("rest_bodies", f"{'batch' if 'batch' in text[:12] else 'event'}-{scenario}", text)
    write("rest_bodies", "x-trigger", TRIGGER)
    write("rest_bodies", "x-batch", BATCH)
    write("rest_bodies", "x-trigger-all-fields", '{"name":"e","channels":["a","private-b",'
          '"presence-c"],"data":"{\\"x\\":1}","socket_id":"1.2","info":"user_count,'
          'subscription_count"}')
    write("rest_bodies", "x-data-object", '{"name":"e","channel":"c","data":{"x":[1,2,3]}}')
    write("rest_bodies", "x-batch-empty", '{"batch":[]}')
    write("rest_bodies", "x-batch-info", '{"batch":[{"name":"e","channel":"presence-a",'
          '"data":"1","info":"user_count"},{"name":"e","channel":"b","data":"2",'
          '"socket_id":"3.4"}]}')
    write("rest_bodies", "x-not-object", '["name","e"]')
    write("rest_bodies", "x-truncated", '{"name":"e","channel":"c","data":"')


# --- config_toml --------------------------------------------------------------------------------

def config_toml():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no ```toml block"
    full = blocks[0]
    write("config_toml", "readme", full)
    write("config_toml", "empty", "")
    write("config_toml", "port-only", "port = 8080\n")
    write("config_toml", "one-app", '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n')
    write("config_toml", "inline-tables", 'host = "::1"\nport = 0\napps = [{ id = "a", key = "k",'
          ' secret = "s", webhooks = [{ url = "http://h/x", event_types = ["client_event"] }] }]\n'
          'webhook_delivery = { batch_ms = 0, max_in_flight = 1 }\n')
    write("config_toml", "wrong-types", 'port = "eighty"\nactivity_timeout = -1\n'
          '[[apps]]\nid = 1\nkey = true\nsecret = 1.5\nclient_events = "yes"\n')
    write("config_toml", "unknown-key", 'colour = "blue"\n[[apps]]\nid = "a"\nkey = "k"\n'
          'secret = "s"\nshape = 3\n')
    write("config_toml", "overflow", "port = 99999999999999999999\npong_timeout_ms = 18446744073709551616\n"
          "outbox_capacity = 0\n")
    write("config_toml", "duplicate-app-ids", '[[apps]]\nid = "a"\nkey = "k1"\nsecret = "s"\n'
          '[[apps]]\nid = "a"\nkey = "k2"\nsecret = "s"\n')
    write("config_toml", "webhook-https", '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
          '[[apps.webhooks]]\nurl = "https://example.com/h"\nevent_types = ["nope"]\n')
    write("config_toml", "strings-escapes", "host = '0.0.0.0'\n[[apps]]\nid = \"\\u00e9\"\n"
          'key = """multi\nline"""\nsecret = \'\'\'raw\\n\'\'\'\n')
    write("config_toml", "dotted-keys", 'webhook_delivery.grace_ms = 1\nwebhook_delivery.batch_ms = 2\n')
    write("config_toml", "broken-syntax", "[[apps]\nid = \n")
    # The README example with its [[apps]] tables cut off and with the app limits zeroed.
    write("config_toml", "readme-globals-only", full.split("[[apps]]")[0])
    write("config_toml", "readme-zero-limits", re.sub(r"= \d+", "= 0", full))


# --- transcript ---------------------------------------------------------------------------------

REAL_TRANSCRIPTS = [
    "signature-rest-worked-example",     # rest_signature, hmac
    "connection-websocket-ping-pong",    # send ping / expect pong
    "bad-input-binary-frame",            # send text and binary
    "rest-auth-body-md5-wrong",          # a // comment line, rest override
    "terminate-not-signed-in-untouched",  # sign_user, rest, expect_close, expect_silence
]


# fuzzing::transcript parses every input as the file `fuzz.jsonl`, and a header whose name is not
# the file name is rejected before any step is read: the seeds are named "fuzz".
FUZZ_NAME = "fuzz"


def transcript():
    for name in REAL_TRANSCRIPTS:
        with open(os.path.join(TRANSCRIPTS, name + ".jsonl"), encoding="utf-8") as f:
            text = f.read()
        first, rest = text.split("\n", 1)
        first = first.replace(f'"name": "{name}"', f'"name": "{FUZZ_NAME}"', 1)
        assert f'"{FUZZ_NAME}"' in first, name
        write("transcript", "t-" + name, first + "\n" + rest)
    # Header keys and step options none of the five above use.
    write("transcript", "x-header-options", "\n".join([
        '{"name": "fuzz", "description": "d", "app": {"client_events": false, "activity_timeout": 1},'
        ' "uses_second_app": true, "snapshot": false}',
        "",
        '{"connect": "bob", "app": "second", "path": "/app/{{key2}}?protocol=4"}',
        '{"expect": "bob", "frame": {"$any": true}, "timeout_ms": 50}',
        '{"sign_channel": {"client": "bob", "channel": "presence-x", "channel_data": "{}",'
        ' "app": "second", "secret": "s"}, "as": "v"}',
        '{"rest": {"method": "GET", "path": "/x", "query": {"a": "b"}, "sign": false,'
        ' "timestamp_offset": -700, "app": "second"}, "expect_status": 404, "expect_text": "{{any}}"}',
        '{"wait_ms": 10}',
        '{"disconnect": "bob"}',
    ]) + "\n")
    write("transcript", "x-header-only", '{"name": "fuzz", "description": "d"}\n')
    write("transcript", "x-other-name", '{"name": "x", "description": "d"}\n{"wait_ms": 1}\n')
    write("transcript", "x-unknown-step", '{"name": "fuzz", "description": "d"}\n{"teleport": "alice"}\n')


def main():
    if "--clean" in sys.argv:
        for target in ("client_frame", "websocket_frames", "rest_request", "rest_bodies",
                       "config_toml", "transcript"):
            d = os.path.join(CORPUS, target)
            if os.path.isdir(d):
                for f in os.listdir(d):
                    os.remove(os.path.join(d, f))
    client_frames()
    websocket_frames()
    rest_request()
    rest_bodies()
    config_toml()
    transcript()
    total = 0
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        total += size
        print(f"{target:18} {len(files):3} files {size:7} bytes")
    print(f"{'total':18} {total:17} bytes")


if __name__ == "__main__":
    main()
