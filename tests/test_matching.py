"""The matching rules, table-driven (matching.py: pure functions)."""

from __future__ import annotations

import pytest

from stripe_bridge.matching.rules import (
    Keys,
    company_domain,
    decide_customer,
    decide_product,
    normalise_company_name,
    normalise_email,
    normalise_product_name,
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme", "acme"),
        ("ACME Inc.", "acme"),
        ("Acme, Inc", "acme"),
        ("Acme LLC", "acme"),
        ("Acme Ltd.", "acme"),
        ("Acme GmbH", "acme"),
        ("Acme S.A.", "acme"),
        ("Acme SAS", "acme"),
        ("Acme B.V.", "acme"),
        ("Acme AG", "acme"),
        ("Acme Corp.", "acme"),
        ("Acme Co.", "acme"),
        ("Acme Co. Ltd", "acme"),
        ("Ácmé", "acme"),
        ("  acme   ", "acme"),
        ("Müller & Söhne GmbH", "muller sohne"),
        ("Acme-Widgets Inc", "acme widgets"),
        ("Co", "co"),  # a name that is only a suffix keeps it
        ("Inc. Acme", "inc acme"),  # only trailing suffixes go
        ("", None),
        (None, None),
    ],
)
def test_company_names_normalise(name: str | None, key: str | None) -> None:
    assert normalise_company_name(name) == key


def test_product_names_keep_words_that_look_like_suffixes() -> None:
    assert normalise_product_name("Pro  Plan, Co-Pilot") == "pro plan co pilot"
    assert normalise_product_name("Pro Plan") != normalise_product_name("Pro Plan Plus")


@pytest.mark.parametrize(
    ("email", "key"),
    [("Billing@Acme.Example", "billing@acme.example"), ("nope", None), (None, None)],
)
def test_emails_normalise_case_insensitively(email: str | None, key: str | None) -> None:
    assert normalise_email(email) == key


@pytest.mark.parametrize(
    "domain", ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me"]
)
def test_free_mail_domains_never_identify_a_company(domain: str) -> None:
    assert company_domain(domain) is None
    assert Keys.of("Someone", f"someone@{domain}", None).domain is None


def veles(*entries: tuple[str, str | None, str | None, str | None]) -> list[tuple[str, Keys]]:
    return [(veles_id, Keys.of(name, email, domain)) for veles_id, name, email, domain in entries]


ACME = ("v_acme", "Acme Inc", "ops@acme.example", None)
ACME_TWIN = ("v_acme2", "ACME GmbH", "sales@acme.example", None)
GLOBEX = ("v_globex", "Globex", "hi@globex.example", "globex.example")


@pytest.mark.parametrize(
    ("stripe", "pool", "linked", "method", "candidates"),
    [
        (
            Keys.of("x", "OPS@ACME.EXAMPLE", None),
            veles(ACME, GLOBEX),
            "v_acme",
            "email",
            ["v_acme"],
        ),
        (
            Keys.of("x", "cfo@globex.example", None),
            veles(ACME, GLOBEX),
            "v_globex",
            "domain",
            ["v_globex"],
        ),
        (
            Keys.of("Acme, Inc.", "acme@gmail.com", None),
            veles(ACME, GLOBEX),
            "v_acme",
            "name",
            ["v_acme"],
        ),
        (Keys.of("Acme", None, None), veles(ACME, ACME_TWIN), None, None, ["v_acme", "v_acme2"]),
        (
            Keys.of("x", "new@acme.example", None),
            veles(ACME, ACME_TWIN),
            None,
            None,
            ["v_acme", "v_acme2"],
        ),
        (Keys.of("Initech", "a@initech.example", None), veles(ACME, GLOBEX), None, None, []),
        (
            Keys.of("x", "a@gmail.com", None),
            veles(("v_g", "G", "b@gmail.com", None)),
            None,
            None,
            [],
        ),
    ],
    ids=[
        "email-other-case",
        "domain",
        "name-suffix",
        "two-by-name",
        "two-by-domain",
        "none",
        "free-mail",
    ],
)
def test_customer_cascade(
    stripe: Keys,
    pool: list[tuple[str, Keys]],
    linked: str | None,
    method: str | None,
    candidates: list[str],
) -> None:
    decision = decide_customer(stripe, pool)

    assert (decision.linked, decision.method, list(decision.candidates)) == (
        linked,
        method,
        candidates,
    )


def test_an_exact_email_wins_over_an_ambiguous_domain() -> None:
    pool = veles(ACME, ACME_TWIN)

    decision = decide_customer(Keys.of("x", "ops@acme.example", None), pool)

    assert decision.linked == "v_acme"


def test_product_matches_one_name_exactly() -> None:
    pool = [("vp_1", "pro plan"), ("vp_2", "team plan"), ("vp_3", "team plan")]

    assert decide_product("pro plan", pool).linked == "vp_1"
    assert decide_product("team plan", pool).linked is None
    assert list(decide_product("team plan", pool).candidates) == ["vp_2", "vp_3"]
    assert decide_product("enterprise", pool).linked is None
    assert decide_product(None, pool).linked is None
