"""A small, stateful fake of Stripe's v1 API for tests (stdlib, and the SDK's lists of event types).

Start it, point the SDK at it, and it answers like Stripe in the API version the bridge's client
pins, ``stripe_bridge.stripe_api.API_VERSION`` (``2026-10-28.endive``; see "API version" below)::

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
* Shapes are the pinned version's (below): ``current_period_*`` on subscription items,
  ``pricing`` on invoice items and lines, the subscription under ``parent``. A deleted customer
  stays retrievable as ``{"id", "object", "deleted": true}`` and its subscriptions are
  canceled; a zero-total invoice is paid when finalized; prices made from ``price_data`` are
  inactive but still emit ``price.created``.
* Accounts, platforms and keys (``keys``, ``tenants``): ``add_account`` keys have full access;
  ``add_restricted_key(key, account, {"webhook": "read", ...})`` holds Stripe's permission
  families, and a request outside them answers 403 naming the permission
  (``rak_webhook_write``). ``add_platform`` registers a platform with an OAuth app;
  ``connect_account`` (or an approved OAuth install) connects an account to it, so that the
  platform's key acts on it with ``Stripe-Account: acct_…`` (any other account: 403
  ``account_invalid``), and its events carry ``"account": "acct_…"``.
* Webhook endpoints (``webhook_endpoints``) and deliveries (``webhooks``): an account's
  endpoints, ``secret`` answered only at creation; every event is queued for the enabled
  endpoints subscribed to it (a connected account's also for its platforms' ``connect``
  endpoints), and ``deliver_pending()`` POSTs them signed like Stripe (``Stripe-Signature:
  t=…,v1=…``), keeping every attempt in ``deliveries``. Deviation: http URLs of 127.0.0.1 and
  localhost are accepted (Stripe wants public hosts), and the body is always the pinned
  version's shape, labelled with the endpoint's ``api_version``.
* OAuth (``oauth``): a Stripe App's install (``install_link``, ``approve_install``), then
  ``POST /v1/oauth/token`` (also ``/oauth/token``, where the SDK's ``client.oauth`` posts) for
  authorization codes (single use, 5 minutes) and refresh tokens (rolled at each use, a year),
  answering 1-hour access tokens that act as the installing account; ``POST
  /v1/oauth/deauthorize`` disconnects it. Errors in OAuth's ``{"error", "error_description"}``.
* Rate limits (``limits``): ``set_rate_limit(account, per_second)`` answers Stripe's 429
  ``rate_limit`` (no ``Retry-After``) beyond N requests in any rolling second on that account
  only; ``rate_limit_refusals(account)`` counts them.
* Not modelled: payments (``pay`` just marks an invoice paid), taxes, discounts, prorations,
  subscription invoices (``latest_invoice`` stays null), test clocks, account creation through
  the API (``/v1/accounts``), automatic retries of failed webhook deliveries, search.

API version: the fake answers ``Stripe-Version`` and renders events (``api_version``) in the
client's pin, imported from ``stripe_bridge.stripe_api``. Every object shape in ``shapes`` was
checked against that version's schemas as the SDKs generated for it publish them: stripe-node
23.1.0 (npm, pins 2026-10-28.endive), ``cjs/resources/*.d.ts``, where a property without ``?`` is
always present, and stripe-python 16.1.0 (PyPI, the bridge's SDK, same pin), ``stripe/_*.py``.
No field of these objects was removed or renamed between basil and endive: the moves often
blamed on later versions (``invoice.subscription`` to ``parent.subscription_details``,
``invoiceitem.price`` to ``pricing``, ``current_period_*`` onto subscription items) are basil's
own (stripe-python CHANGELOG 12.0.0; docs.stripe.com/changelog/basil/2025-03-31/
invoice-pricing-configurations) and were in place. Changes applied from basil to endive, with
the release that brought each (stripe-node / stripe-python CHANGELOG.md):

* Removed, not fields of these objects in basil or endive (stripe-python 12.0.0 and 16.1.0
  classes, stripe-node 23.1.0 types): ``product.attributes`` (a legacy ``type=good`` field);
  ``invoice.days_until_due`` (a create/update parameter only: kept internally, as
  ``_days_until_due``, to set ``due_date`` at finalization; ``_`` fields never leave the fake).
* ``invoice.automatic_tax.provider``: null (2025-04-30.basil, stripe-node 18.1.0).
* ``account.business_profile.minority_owned_business_designation``: null (2025-04-30.basil,
  stripe-node 18.1.0); ``account.settings.branding``, ``card_payments``, ``payments``: required
  objects the fake lacked (stripe-node 23.1.0 ``Accounts.d.ts``).
* ``subscription.billing_mode`` (2025-06-30.basil, stripe-node 18.3.0;
  docs.stripe.com/changelog/basil/2025-06-30/billing-mode): ``{"type": "flexible",
  "flexible": null}``, flexible being the default since 2025-09-30.clover (stripe-python 13.0.0
  ``SubscriptionCreateParamsBillingMode.type``: "If no value is passed, the default is
  flexible"); ``subscription.billing_thresholds`` and its items' were removed in 2025-03-31.basil
  and restored in 2025-05-28.basil (stripe-python 12.0.0, 12.2.0): kept, null.
* ``invoiceitem.net_amount``: null for ``discountable`` items, else the amount (2025-09-30.clover,
  stripe-node 19.0.0; "This field is null for discountable=true items", ``InvoiceItems.d.ts``).
* ``customer_account``: null on invoices, invoice items and subscriptions; line ``subtotal``
  (the amount: no discounts or taxes here) (2025-12-15.clover, stripe-node 20.1.0, stripe-python
  14.1.0). Line ``subscription``: null (already basil's, stripe-python 12.0.0).
* ``quantity_decimal`` (a decimal string) on invoice items and lines (2026-03-25.dahlia,
  stripe-node 21.0.0, stripe-python 15.0.0).
* Subscriptions: ``managed_payments`` null (2026-04-22.dahlia, stripe-node 22.1.0);
  ``billing_schedules`` [] (2026-05-27.dahlia, 22.2.0); ``invoice_settings.custom_fields``,
  ``description``, ``footer`` null (2026-06-24.dahlia, 22.3.0);
  ``cancellation_details.feedback_option`` null (2026-08-26.dahlia, 22.6.0);
  ``trial_settings.end_behavior.billing_cycle_anchor`` null (2026-09-30.endive, 23.0.0).
* 2026-09-30.endive (stripe-node 23.0.0): ``product.tax_details`` null, subscription item
  ``current_trial`` null, ``account.business_profile.specified_commercial_transactions_act_url``
  null.
* ``GET /v1/invoices?subscription=`` matches ``parent.subscription_details.subscription`` (it read
  the top-level ``subscription`` that basil removed).

Fields an endive schema marks optional (``?``: expandable or conditional, such as
``customer.tax``, ``invoice.payments``, ``status_details``, ``frozen_fields``) are left out.
Customers, prices, plans, events and deleted stubs needed no change.

Modules: ``server`` (FakeStripe: HTTP server, faults, seeding), ``tenants`` (the set-up
helpers FakeStripe inherits), ``keys`` (accounts, keys, authentication, permissions),
``oauth``, ``limits``, ``webhooks`` (deliveries), ``routing`` (routes, idempotency, rollback),
``context`` (the store and a request's ``Ctx``), ``params``, ``records``, ``faults``,
``transport``, ``shapes`` (every object skeleton), and one module per resource (``accounts``,
``customers``, ``products``, ``prices``, ``invoice_items``, ``invoices``, ``subscriptions``,
``events``, ``webhook_endpoints``), each exposing ``ROUTES`` of plain handler functions.

Public API: start/stop (or ``with``); add_account, add_restricted_key, revoke_key,
add_platform, client_id, connect_account, install_link, approve_install; set_rate_limit,
rate_limit_refusals; deliver_webhooks (a switch), deliver_pending, resend, wait_for_deliveries,
deliveries, webhook_timeout; fail_next, fail_when, drop_next, set_delay, delay_when,
reset_faults; requests, objects, get, seed, expire_idempotency_keys, reset; and ``handle()``
(the HTTP-free core, usable directly). ``FakeStripe(clock=…)`` sets the clock of everything
that ages (idempotency keys, OAuth codes and tokens, rate-limit windows, signatures).
"""

from tests.fake_stripe.params import ApiError, Params, decode_params
from tests.fake_stripe.records import API_VERSION, RequestRecord, add_interval, mask_key, new_id
from tests.fake_stripe.server import FakeStripe
from tests.fake_stripe.webhooks import Delivery

__all__ = [
    "API_VERSION",
    "ApiError",
    "Delivery",
    "FakeStripe",
    "Params",
    "RequestRecord",
    "add_interval",
    "decode_params",
    "mask_key",
    "new_id",
]
