"""A small, stateful fake of Stripe's v1 API for tests (stdlib only).

Start it, point the SDK at it, and it answers like Stripe (API version ``2025-03-31.basil``)::

    fake = FakeStripe()
    fake.add_account("sk_test_A", account_id="acct_1Test")
    with fake:                                   # start() ... stop()
        client = stripe.StripeClient("sk_test_A", base_addresses={"api": fake.url},
                                     max_network_retries=0)

Behaviour that follows Stripe's documentation (and what it deliberately leaves out):

* List order: newest first, i.e. ``created`` descending and, for equal ``created``, the later
  insertion first. ``starting_after`` / ``ending_before`` are cursors into that order; a cursor
  that has since left the filtered set (a deleted customer, a canceled subscription) still works.
  Invoice lines and subscription items are in insertion order, oldest first.
* Idempotency (``Idempotency-Key`` on POST and DELETE; Stripe itself ignores it on DELETE): the
  first result is stored once the endpoint has *begun executing*, success or error, and replayed
  with ``Idempotent-Replayed: true``; a key reused with another method, path or parameters answers
  400 ``idempotency_error``. Nothing is stored when the request failed before execution: bad
  authentication, unknown URL, parameter validation (``parameter_missing``,
  ``parameter_invalid_*``, ``parameter_unknown``) or an injected fault. Stripe stores a 5xx that
  happens after execution began; every 5xx here is injected before execution, so none is stored.
  Keys live 24 hours (``expire_idempotency_keys()`` forgets them all at once).
* A path id that is unknown answers 404 ``resource_missing`` with ``param: "id"``; an unknown id in
  a body parameter answers 400 ``resource_missing`` with that parameter. Unknown parameters are
  refused (``parameter_unknown``), so a pre-basil call such as ``invoiceitems`` with ``price``
  (now ``pricing[price]``) fails here as it does at Stripe. A failing request changes nothing.
* Shapes are basil's: ``current_period_*`` on subscription items, ``pricing`` on invoice items
  and lines. A deleted customer stays retrievable as ``{"id", "object", "deleted": true}``
  and its subscriptions are canceled; a zero-total invoice is paid when finalized; prices made
  from ``price_data`` are inactive but still emit ``price.created``.
* Not modelled: payments (``pay`` just marks an invoice paid), taxes, discounts, prorations,
  subscription invoices (``latest_invoice`` stays null), test clocks, Connect, search.

Modules: ``server`` (FakeStripe: HTTP server, keys, faults, seeding), ``routing`` (routes,
idempotency, rollback), ``context`` (the store and a request's ``Ctx``), ``params``, ``records``,
``faults``, ``transport``, ``shapes`` (every object skeleton), and one module per resource
(``accounts``, ``customers``, ``products``, ``prices``, ``invoice_items``, ``invoices``,
``subscriptions``, ``events``), each exposing ``ROUTES`` of plain handler functions.

Public API: start/stop (or ``with``), add_account, revoke_key, fail_next, fail_when, drop_next,
set_delay, delay_when, reset_faults, requests, objects, get, seed, expire_idempotency_keys, reset,
and ``handle()`` (the HTTP-free core, usable directly).
"""

from tests.fake_stripe.params import ApiError, Params, decode_params
from tests.fake_stripe.records import API_VERSION, RequestRecord, add_interval, mask_key, new_id
from tests.fake_stripe.server import FakeStripe

__all__ = ["API_VERSION", "ApiError", "FakeStripe", "Params", "RequestRecord", "add_interval",
           "decode_params", "mask_key", "new_id"]
