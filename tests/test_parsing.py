"""Dense little functions: event parsing at the door, signatures, domains, settings."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from stripe_bridge.errors import BadRequest, ConfigError
from stripe_bridge.inbox.apply import refusal
from stripe_bridge.inbox.door import classify, parse_event, parse_veles_event, sign, verify
from stripe_bridge.matching.rules import derive_domain, normalise_domain
from stripe_bridge.settings import Settings, mode_of_key

GOOD = {
    "id": "evt_1",
    "object": "event",
    "type": "customer.created",
    "created": 1,
    "livemode": False,
    "data": {"object": {"id": "cus_1"}},
}


def test_parse_event_keeps_the_raw_body_and_the_indexed_fields() -> None:
    body = orjson.dumps({**GOOD, "account": "acct_1", "api_version": "2017-08-15"})

    incoming = parse_event(body)

    assert (incoming.id, incoming.type, incoming.object_id, incoming.extra["account"]) == (
        "evt_1",
        "customer.created",
        "cus_1",
        "acct_1",
    )
    assert incoming.payload is body


@pytest.mark.parametrize(
    "change",
    [
        {"id": 5},
        {"id": "cus_1"},
        {"type": ""},
        {"created": "1"},
        {"created": True},
        {"livemode": "no"},
        {"data": {}},
        {"data": {"object": []}},
    ],
)
def test_parse_event_refuses_what_is_not_a_stripe_event(change: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        parse_event(orjson.dumps({**GOOD, **change}))


def test_classify_ignores_unknown_types_at_the_door() -> None:
    unknown = parse_event(orjson.dumps({**GOOD, "type": "charge.refunded"}))
    fine = parse_event(orjson.dumps(GOOD))
    handled = {"customer.created": lambda event, session: None}

    for incoming in (unknown, fine):
        classify(incoming, handled=handled)

    assert (unknown.status, unknown.reason) == ("ignored", "unhandled event type charge.refunded")
    assert fine.status == "received"


@pytest.mark.parametrize(
    ("status", "mode", "livemode", "reason"),
    [
        ("connected", "test", False, None),
        ("not_connected", "live", True, None),
        ("connected", "test", True, "mode mismatch: live event, bridge is in test mode"),
        ("not_connected", "live", False, "mode mismatch: test event, bridge is in live mode"),
        ("disconnected", "test", False, "disconnected"),
    ],
)
def test_the_jobs_connection_gate(
    status: str, mode: str, livemode: bool, reason: str | None
) -> None:
    assert refusal(status, mode, livemode) == reason


def test_signature_with_several_v1_values_verifies_if_any_matches() -> None:
    body = b'{"a": 1}'
    now = int(time.time())
    good = sign(body, "whsec_a", now).split(",")[1]
    header = f"t={now},v1={'0' * 64},{good}"

    verify(body, header, ["whsec_a"], 300)


def test_signature_refuses_a_body_that_is_not_utf8() -> None:
    with pytest.raises(BadRequest, match="UTF-8"):
        verify(b"\xff\xfe", "t=1,v1=00", ["whsec_a"], 300)


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("https://www.Acme.example/about", "acme.example"),
        ("billing@Sub.Acme.Example", "sub.acme.example"),
        ("acme.example", "acme.example"),
        ("localhost", None),
        ("", None),
    ],
)
def test_normalise_domain(value: str, domain: str | None) -> None:
    assert normalise_domain(value) == domain


def test_derive_domain_prefers_metadata_over_email() -> None:
    assert derive_domain("a@gmail.com", {"website": "https://acme.example"}) == "acme.example"
    assert derive_domain("a@acme.example", {}) == "acme.example"
    assert derive_domain(None, None) is None


@pytest.mark.parametrize(
    ("key", "mode"),
    [("sk_test_1", "test"), ("rk_test_1", "test"), ("sk_live_1", "live"), ("rk_live_1", "live")],
)
def test_mode_of_key(key: str, mode: str) -> None:
    assert mode_of_key(key) == mode


def test_settings_refuse_a_malformed_key_and_mode() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"STRIPE_API_KEY": "pk_test_1"})
    with pytest.raises(ConfigError):
        Settings.from_env({"STRIPE_MODE": "staging"})


def test_settings_default_to_the_embedded_sqlite_file_and_split_secrets() -> None:
    settings = Settings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_a, whsec_b"})

    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("/var/stripe-bridge.db")
    assert settings.redis_url is None
    assert settings.stripe_webhook_secrets == ("whsec_a", "whsec_b")
    assert "whsec_a" not in repr(settings)


@pytest.mark.parametrize(
    "change",
    [
        {"created": 2**70},  # read as a float: not unix seconds
        {"created": 2**63 + 1},  # past the inbox's 64-bit column
        {"created": -1},
        {"id": "evt_" + "x" * 100_000},
        {"api_version": "2026-" + "9" * 100},
        {"account": "acct_" + "1" * 300},
        {"data": {"object": {"id": "cus_" + "x" * 300}}},
        {"id": "evt_1\u0000"},
        {"type": "customer.created\u0000"},
        {"data": {"object": {"id": "cus_\u0000"}}},
        {"account": "acct_\u0000"},
    ],
)
def test_parse_event_refuses_values_no_stripe_event_has(change: dict[str, object]) -> None:
    """Each would overflow an inbox column: the whole group commit would fail with a 5xx."""
    with pytest.raises(BadRequest):
        parse_event(json.dumps({**GOOD, **change}).encode())


@pytest.mark.parametrize("event_type", [["customer.upserted"], {"a": 1}, 7, None])
def test_a_veles_event_whose_type_is_not_a_string_is_a_bad_request(event_type: object) -> None:
    # found by fault scenario 3 at full size: a list as `type` raised TypeError (a 500)
    body = orjson.dumps({"id": "vev_1", "type": event_type, "created": 1, "data": {}})

    with pytest.raises(BadRequest, match="unknown Veles event type"):
        parse_veles_event(body, {})


BODY = b'{"id": "evt_1"}'


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing signature header"),
        ("", "missing signature header"),
        ("v1=abc", "malformed signature header"),  # no timestamp
        ("t=123", "malformed signature header"),  # no signature
        ("t=12a,v1=abc", "malformed signature header"),  # not unix seconds
        ("t=1,t=2,v1=abc", "malformed signature header"),  # two timestamps
        ("t=1,v1=", "malformed signature header"),  # an empty signature
        ("t=1;v1=abc", "malformed signature header"),  # not comma-separated
        ("t=1,v1=ü", "malformed signature header"),  # not ASCII
        ("t=1, v1=abc", "malformed signature header"),  # read as the SDK does: no spaces
    ],
)
def test_a_malformed_signature_header_is_refused_for_its_shape(
    header: str | None, reason: str
) -> None:
    with pytest.raises(BadRequest, match=f"^{reason}$"):
        verify(BODY, header, ["whsec_a"], 300)


def test_an_old_timestamp_is_refused_as_outside_the_window_even_when_signed() -> None:
    old = int(time.time()) - 301
    with pytest.raises(BadRequest, match=r"^timestamp outside the tolerance window$"):
        verify(BODY, sign(BODY, "whsec_a", old), ["whsec_a"], 300)


def test_a_stale_header_of_another_secret_is_a_mismatch_not_a_stale_timestamp() -> None:
    """Only a sender holding the secret learns that its timestamp is stale."""
    old = int(time.time()) - 301
    with pytest.raises(BadRequest, match=r"^signature does not match$"):
        verify(BODY, sign(BODY, "whsec_other", old), ["whsec_a"], 300)


def test_a_well_formed_header_of_another_secret_is_a_signature_mismatch() -> None:
    header = sign(BODY, "whsec_other", int(time.time()))
    with pytest.raises(BadRequest, match=r"^signature does not match$"):
        verify(BODY, header, ["whsec_a", "whsec_b"], 300)


def test_the_second_secret_of_a_rollover_verifies() -> None:
    verify(BODY, sign(BODY, "whsec_b", int(time.time())), ["whsec_a", "whsec_b"], 300)


def test_unknown_schemes_beside_v1_are_ignored() -> None:
    header = sign(BODY, "whsec_a", int(time.time())) + ",v0=legacy,x=1"
    verify(BODY, header, ["whsec_a"], 300)
