"""Scenario 4, the admin API against its own schema.

`GET /admin/api/openapi.json` is built from the routes (web/openapi.py: each endpoint declares
its operation). Given the app on real PostgreSQL and Redis, connected to the fake Stripe and
seeded with the fixture story, Veles records, an order and a dead letter, when schemathesis
sends every operation valid and invalid requests (with the bearer token, and sometimes without
or with a broken one), then no answer is a 5xx and every answer is one the document declares:
its status code, its content type and its body schema.

The document needs the bearer token, like every /admin/api route: it maps the operator's
surface (and would grow with workspace routes), and the only readers (operators, their tools,
this test) hold the token anyway."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.models import FAILED, StripeEvent, utcnow
from stripe_bridge.web.app import create_app
from stripe_bridge.web.openapi import PREFIX, Undeclared, document
from tests.faults.figures import record, size
from tests.support import (
    admin_headers,
    load_fixture,
    post_event,
    post_veles,
    run_jobs,
    veles_event,
)

pytestmark = [pytest.mark.faults]

EXAMPLES = size(ci=12, full=150)  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
STORY = (
    "product.created",
    "price.created",
    "customer.created",
    "customer.subscription.created",
    "invoice.paid",
)


@pytest.fixture
def api(connected: Context) -> Iterator[TestClient]:
    """The app, connected, seeded; a 5xx is an answer to judge, not an exception."""
    with TestClient(create_app(connected), raise_server_exceptions=False) as client:
        seed(client, connected)
        yield client


def seed(client: TestClient, bridge: Context) -> None:
    for event_type in STORY:
        assert post_event(client, load_fixture("current", event_type)).status_code == 200
    for event_type, data in (
        ("customer.upserted", {"id": "vc_acme", "name": "Acme Corporation"}),
        ("product.upserted", {"id": "vp_pro", "name": "Pro Plan", "sku": "PRO"}),
        ("customer.upserted", {"id": "vc_other", "name": "Other Ltd"}),
        (
            "order.committed",
            {
                "id": "vo_1",
                "customer_id": "vc_acme",
                "currency": "usd",
                "lines": [{"product_id": "vp_pro", "quantity": 2, "unit_amount": 4900}],
            },
        ),
    ):
        assert post_veles(client, veles_event(event_type, data)).status_code == 202
    run_jobs(bridge)
    with bridge.session_factory.begin() as session:
        session.add(
            StripeEvent(
                workspace_id="default",
                id="evt_dead_letter_1",
                type="invoice.paid",
                created=1_750_000_000,
                object_id="in_gone",
                payload=b"{}",
                received_at=utcnow(),
                status=FAILED,
                attempts=1,
                last_error="PermanentError: seeded",
                first_failed_at=utcnow(),
                last_failed_at=utcnow(),
                livemode=False,
            )
        )


def the_document(client: TestClient) -> dict[str, Any]:
    response = client.get(f"{PREFIX}/openapi.json", headers=admin_headers())
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_the_document_needs_the_bearer_token(api: TestClient) -> None:
    assert api.get(f"{PREFIX}/openapi.json").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert api.get(f"{PREFIX}/openapi.json", headers=wrong).status_code == 401
    assert the_document(api)["openapi"].startswith("3.")


def test_every_admin_route_is_in_the_document(api: TestClient) -> None:
    doc = the_document(api)
    declared = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    [mount] = [r for r in api.app.routes if isinstance(r, Mount) and r.path == PREFIX]  # type: ignore[attr-defined]
    routes = [(PREFIX, route) for route in mount.routes]
    routed = set()
    while routes:  # the workspace-scoped mount's routes too
        prefix, route = routes.pop()
        if isinstance(route, Mount):
            routes.extend((prefix + route.path, inner) for inner in route.routes)
        elif isinstance(route, Route):
            routed |= {(method, prefix + route.path) for method in route.methods or set()}
    assert declared == routed - {(method, path) for method, path in routed if method == "HEAD"}


def test_a_route_without_a_declaration_fails_the_document() -> None:
    async def undeclared(request: Request) -> Response:
        return Response()

    app = Starlette(routes=[Mount(PREFIX, routes=[Route("/new-thing", undeclared)])])

    with pytest.raises(Undeclared, match="/admin/api/new-thing"):
        document(app.routes, version="test")


def test_the_workspace_scoped_form_answers_as_the_unscoped_one(api: TestClient) -> None:
    for path in ("/customers", "/connection", "/products?active=true", "/dead-letters"):
        unscoped = api.get(PREFIX + path, headers=admin_headers())
        scoped = api.get(PREFIX + "/workspaces/default" + path, headers=admin_headers())
        assert scoped.status_code == unscoped.status_code == 200
        assert scoped.json() == unscoped.json()
    paths = the_document(api)["paths"]
    assert "/admin/api/workspaces" in paths
    assert "/admin/api/workspaces/{workspace_id}/customers" in paths


def _request_kwargs(case: schemathesis.Case) -> dict[str, Any]:
    """schemathesis' requests-style arguments, as the Starlette test client takes them."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=admin_headers())
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        data = kwargs.pop("data")
        kwargs["content"] = data.encode() if isinstance(data, str) else data
    return kwargs


def exercise(
    api: TestClient,
    operation: Any,
    mode: GenerationMode,
    answers: Counter[int],
    failures: dict[str, str],
) -> None:
    """Send `EXAMPLES` generated requests of one operation; keep the first failure's report."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same requests each run: a red build is the change's fault
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        response = api.request(**_request_kwargs(case))
        answers[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as failure:  # kept, judged at the end
            failures.setdefault(label, str(failure)[:1500])

    call()


def test_admin_api_answers_match_its_schema(api: TestClient, connected: Context) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_dict(the_document(api))
    answers: Counter[int] = Counter()
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(api, operation, mode, answers, failures)

    with connected.session_factory() as session:
        events = len(list(session.scalars(select(StripeEvent.id))))
    record(
        "admin schema",
        operations=len(operations),
        requests=sum(answers.values()),
        five_xx=sum(n for status, n in answers.items() if status >= 500),
        answers={str(status): n for status, n in sorted(answers.items())},
        failing_operations=len(failures),
        seeded_events=events,
        seconds=round(time.monotonic() - started, 1),
    )
    assert failures == {}, "\n\n".join(f"{op}:\n{text}" for op, text in failures.items())
