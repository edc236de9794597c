"""The PyPI `pusher` SDK against poxide, with a pusher-js listener checking what arrives."""

import json

import pusher
import pytest

from conftest import APP_ID, APP_KEY, HOST, uid


def test_trigger_single_channel_delivers_exact_data(sdk, listener):
    listener.connect("a")
    channel = uid("py-single-")
    assert listener.subscribe("a", channel)["type"] == "subscribed"
    reply = sdk.trigger(channel, "order-shipped", {"id": 17, "items": ["a", "b"], "note": "héllo ✓"})
    assert reply == {}
    assert listener.wait_events("a", channel, 1) == [
        ("order-shipped", {"id": 17, "items": ["a", "b"], "note": "héllo ✓"}),
    ]


def test_trigger_string_data_is_relayed_verbatim(sdk, listener):
    listener.connect("a")
    channel = uid("py-str-")
    listener.subscribe("a", channel)
    sdk.trigger(channel, "text", "plain text, not JSON")
    assert listener.wait_events("a", channel, 1) == [("text", "plain text, not JSON")]


def test_trigger_multi_channel_reaches_each_channel_once(sdk, listener):
    listener.connect("a")
    listener.connect("b")
    c1, c2, c3 = uid("py-m-"), uid("py-m-"), uid("private-py-m-")
    listener.subscribe("a", c1)
    listener.subscribe("a", c2)
    assert listener.subscribe("b", c3)["type"] == "subscribed"
    sdk.trigger([c1, c2, c3], "fanout", {"n": 1})
    sdk.trigger([c1, c2, c3], "done", {"n": 2})
    for conn, ch in (("a", c1), ("a", c2), ("b", c3)):
        assert listener.wait_events(conn, ch, 2) == [("fanout", {"n": 1}), ("done", {"n": 2})]


def test_trigger_batch_delivers_in_order(sdk, listener):
    listener.connect("a")
    c1, c2 = uid("py-b-"), uid("py-b-")
    listener.subscribe("a", c1)
    listener.subscribe("a", c2)
    reply = sdk.trigger_batch([
        {"channel": c1, "name": "e1", "data": {"n": 1}},
        {"channel": c2, "name": "e2", "data": "two"},
        {"channel": c1, "name": "e3", "data": {"n": 3}},
    ])
    assert reply == {}
    assert listener.wait_events("a", c1, 2) == [("e1", {"n": 1}), ("e3", {"n": 3})]
    assert listener.wait_events("a", c2, 1) == [("e2", "two")]


def test_trigger_socket_id_excludes_that_connection(sdk, listener):
    sid_a = listener.connect("a")
    listener.connect("b")
    channel = uid("py-excl-")
    listener.subscribe("a", channel)
    listener.subscribe("b", channel)
    sdk.trigger(channel, "not-for-a", {"x": 1}, socket_id=sid_a)
    sdk.trigger(channel, "everyone", {"x": 2})
    assert listener.wait_events("b", channel, 2) == [("not-for-a", {"x": 1}), ("everyone", {"x": 2})]
    # In-order delivery: A seeing the second event and not the first means it was excluded.
    assert listener.wait_events("a", channel, 1) == [("everyone", {"x": 2})]


def test_encrypted_channel_trigger_is_decrypted_by_pusher_js(sdk, listener):
    listener.connect("a")
    channel = uid("private-encrypted-py-")
    assert listener.subscribe("a", channel)["type"] == "subscribed"
    sdk.trigger(channel, "secret", {"text": "from python"})
    assert listener.wait_events("a", channel, 1) == [("secret", {"text": "from python"})]


def test_channels_info_with_prefix(sdk, listener):
    listener.connect("a")
    prefix = uid("pyls") + "-"
    listener.subscribe("a", prefix + "one")
    listener.subscribe("a", prefix + "two")
    listener.subscribe("a", uid("unrelated-"))
    assert sdk.channels_info(prefix_filter=prefix) == {"channels": {prefix + "one": {}, prefix + "two": {}}}


def test_channels_info_presence_user_count(sdk, listener):
    prefix = "presence-" + uid("pyp") + "-"
    listener.connect("a", user={"id": "u1", "info": {"name": "One"}})
    listener.connect("b", user={"id": "u2"})
    listener.connect("c", user={"id": "u2"})
    sub = listener.subscribe("a", prefix + "room")
    assert sub["members"] == [{"id": "u1", "info": {"name": "One"}}]
    listener.subscribe("b", prefix + "room")
    listener.subscribe("c", prefix + "room")
    assert sdk.channels_info(prefix_filter=prefix, attributes=["user_count"]) == {
        "channels": {prefix + "room": {"user_count": 2}},
    }


def test_channel_info_counts(sdk, listener):
    listener.connect("a")
    listener.connect("b")
    channel = uid("py-info-")
    listener.subscribe("a", channel)
    listener.subscribe("b", channel)
    assert sdk.channel_info(channel, ["subscription_count"]) == {"occupied": True, "subscription_count": 2}
    assert sdk.channel_info(uid("py-empty-")) == {"occupied": False}


def test_users_info_lists_presence_members(sdk, listener):
    channel = uid("presence-pyusers-")
    for conn, user in (("a", "zoe"), ("b", "adam"), ("c", "mia")):
        listener.connect(conn, user={"id": user})
        listener.subscribe(conn, channel)
    assert sdk.users_info(channel) == {"users": [{"id": "adam"}, {"id": "mia"}, {"id": "zoe"}]}
    assert sdk.channel_info(channel, ["user_count"]) == {"occupied": True, "user_count": 3}


def test_user_count_on_non_presence_channel_is_bad_request(sdk):
    with pytest.raises(pusher.errors.PusherBadRequest) as exc:
        sdk.channel_info(uid("py-plain-"), ["user_count"])
    assert str(exc.value) == 'Invalid info attribute "user_count": only available for presence channels'


def test_wrong_secret_is_bad_auth(poxide_port):
    bad = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret="wrong", host=HOST, port=poxide_port, ssl=False)
    with pytest.raises(pusher.errors.PusherBadAuth) as exc:
        bad.trigger(uid("py-"), "e", {})
    assert str(exc.value).startswith('Invalid signature: you should have sent HmacSHA256Hex("POST\\n/apps/424242/events\\n')


def test_unknown_app_id_is_404_and_the_second_app_works(sdk, listener, poxide_port):
    default_app = pusher.Pusher(app_id="123", key="app_key", secret="secret", host=HOST, port=poxide_port, ssl=False)
    # The default app's id is "app_id", which this SDK cannot address: a numeric id poxide does not know is a 404.
    with pytest.raises(pusher.errors.PusherBadStatus) as exc:
        default_app.trigger(uid("py-"), "e", {})
    assert str(exc.value) == "404: Unknown app id: 123"
    listener.connect("a")
    channel = uid("py-app2-")
    listener.subscribe("a", channel)
    sdk.trigger(channel, "mine", json.dumps({"app": 2}))
    assert listener.wait_events("a", channel, 1) == [("mine", {"app": 2})]
