// The stripe-bridge console: the four tabs of Veles' "Admin Console > Integrations > Stripe",
// and the dead letters, over the JSON admin API (/admin/api) with the session cookie.
// Text from the API is only ever set as textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const STATUS_WORDS = { matched: "Matched", not_matched: "Not Matched", ignored: "Ignored" };
const stamp = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
const when = (iso) => (iso ? stamp.format(new Date(iso)) : "Never");
const dash = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

let session = { operator: false, workspace_id: null, csrf: null, registers_webhook_endpoint: false };
let workspace = "default";
let current = "general";

// --- talking to the API ------------------------------------------------------------------------

class Problem extends Error {}

function scoped(path) {
  return workspace === "default" ? path : `workspaces/${encodeURIComponent(workspace)}/${path}`;
}

async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = { "Content-Type": "application/json" };
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let response;
  try {
    response = await fetch("/admin/api/" + path, { method, headers, body: options.body, credentials: "same-origin" });
  } catch (_) {
    throw new Problem("The bridge could not be reached. Check your network and try again.");
  }
  if (response.status === 401) { window.location.assign("/admin"); throw new Problem("Your session ended: log in again."); }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error && typeof body.error.message === "string" ? body.error.message : "";
    throw new Problem(words(response.status, message));
  }
  return body;
}

function words(status, message) {
  if (status >= 500) return "The bridge could not do this just now (its database or Stripe may be unavailable). Try again in a minute.";
  if (status === 403) return "This is not allowed: " + (message || "ask the operator.");
  if (status === 404) return "Not found: " + (message || "it may have been removed meanwhile.");
  return message ? message.charAt(0).toUpperCase() + message.slice(1) + "." : "The bridge refused this request.";
}

const post = (path, body) => api(scoped(path), { method: "POST", body: JSON.stringify(body || {}) });

let said = 0;  // which message the status line shows: a load clears only its own
let kept = "";  // the last action's result: a load that runs meanwhile puts it back when done
function busy(text) { $("status").textContent = text || ""; return ++said; }
function tell(text) { kept = text; busy(text); }
function fail(error) {
  $("error").textContent = error instanceof Problem ? error.message : "Something went wrong in the console. Reload the page.";
  $("error").hidden = false;
  kept = ""; busy("");
}
function ok() { $("error").hidden = true; }

async function attempt(run, doing) {
  if (doing) kept = "";  // an action starts: the last one's result is over
  const mine = busy(doing || "Loading…");
  try { await run(); ok(); if (said === mine) busy(kept); } catch (error) { fail(error); }
}

// --- small builders ----------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const button = (label, run, extra = {}) => el("button", { type: "button", class: "act", text: label, onclick: run, ...extra });
const pill = (word, kind) => el("span", { class: "pill " + (kind || ""), text: word });

function productStatus(status) {
  if (status === "name_match" || status === "import" || status === "manual") return "Matched: " + status;
  return STATUS_WORDS[status] || status;
}

function money(amount, currency) {
  if (amount === null || amount === undefined || !currency) return "";
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() }).format(amount / 100); }
  catch (_) { return `${amount} ${currency}`; }
}

function rows(tbody, items, columns, empty) {
  tbody.replaceChildren();
  if (!items.length) {
    tbody.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns), text: empty })));
    return;
  }
  for (const cells of items) {
    const tr = el("tr");
    for (const value of cells) tr.append(el("td", {}, value instanceof Node ? value : document.createTextNode(dash(value))));
    tbody.append(tr);
  }
}

// A list with keyset pages: the cursors seen so far make "Previous" possible.
class Pages {
  constructor(pager, load) { this.pager = $(pager); this.load = load; this.reset(); }
  reset() { this.cursors = [""]; this.index = 0; }
  query(params) {
    params.set("limit", String(PAGE));
    if (this.cursors[this.index]) params.set("cursor", this.cursors[this.index]);
    return params;
  }
  show(page) {
    this.cursors[this.index + 1] = page.next_cursor || "";
    const first = this.index * PAGE;
    const total = page.total === undefined ? first + page.data.length : page.total;
    const range = page.data.length ? `${first + 1}–${first + page.data.length} of ${total}` : `0 of ${total}`;
    this.pager.replaceChildren(
      button("Previous", () => { this.index -= 1; this.load(); }, { disabled: this.index === 0 }),
      el("span", { class: "muted", text: range }),
      button("Next", () => { this.index += 1; this.load(); }, { disabled: !page.next_cursor }),
    );
  }
}

function debounce(run, ms = 250) {
  let timer = 0;
  return () => { clearTimeout(timer); timer = setTimeout(run, ms); };
}

// --- dialogs -----------------------------------------------------------------------------------

function confirmWith({ title, text, action, reason }) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  $("confirm-reason-field").hidden = !reason;
  $("confirm-reason").value = "";
  $("confirm-reason").required = Boolean(reason);
  return new Promise((resolve) => {
    const done = (value) => { dialog.close(); $("confirm-form").onsubmit = null; $("confirm-cancel").onclick = null; resolve(value); };
    $("confirm-form").onsubmit = (event) => { event.preventDefault(); done(reason ? $("confirm-reason").value.trim() : true); };
    $("confirm-cancel").onclick = () => done(null);
    dialog.onclose = () => resolve(null);
    dialog.showModal();
    (reason ? $("confirm-reason") : $("confirm-ok")).focus();
  });
}

// --- General -----------------------------------------------------------------------------------

let connection = null;

async function loadConnection() {
  connection = await api(scoped("connection"));
  const connected = connection.status === "connected";
  $("connected-view").hidden = !connected;
  $("connect-form").hidden = connected;
  $("g-account").textContent = dash(connection.account_name);
  $("g-account-id").textContent = dash(connection.account_id);
  $("g-mode").textContent = connection.mode === "live" ? "Live" : "Test";
  $("g-connected").textContent = connected ? when(connection.connected_at) : "—";
  $("g-customers-synced").textContent = when(connection.customers_last_synced_at);
  $("g-key").textContent = connection.api_key_last4 ? "…" + connection.api_key_last4 : "—";
  $("customers-synced").textContent = when(connection.customers_last_synced_at);
  $("products-synced").textContent = when(connection.products_last_synced_at);
  $("connect-secret-field").hidden = session.registers_webhook_endpoint;
  $("connect-note").textContent = connection.status === "disconnected"
    ? `Disconnected${connection.disconnected_at ? " on " + when(connection.disconnected_at) : ""}: every record was kept. Connect again to resume syncing.`
    : session.registers_webhook_endpoint
      ? "The bridge registers its webhook endpoint in your Stripe account itself."
      : "Give the signing secret of the webhook endpoint that points at this bridge.";
  banner("customers", connection.unmatched_customers || 0);
  banner("products", connection.unmatched_products || 0);
}

function banner(noun, count) {
  $(noun + "-banner").hidden = !count;
  $(noun + "-banner-text").textContent = `${count} unmatched Stripe ${noun} need review`;
}

async function connect(event) {
  event.preventDefault();
  const body = { api_key: $("connect-key").value.trim() };
  const secret = $("connect-secret").value.trim();
  if (secret && !session.registers_webhook_endpoint) body.webhook_secret = secret;
  await attempt(async () => {
    await api(scoped("connection"), { method: "PUT", body: JSON.stringify(body) });
    $("connect-key").value = ""; $("connect-secret").value = "";
    await loadConnection();
  }, "Connecting…");
}

function updateKey() {
  const dialog = $("key-dialog");
  $("new-key").value = "";
  $("key-form").onsubmit = async (event) => {
    event.preventDefault();
    const key = $("new-key").value.trim();
    dialog.close();
    $("new-key").value = "";
    await attempt(async () => {
      await api(scoped("connection"), { method: "PUT", body: JSON.stringify({ api_key: key }) });
      await loadConnection();
    }, "Checking the key with Stripe…");
  };
  $("key-cancel").onclick = () => dialog.close();
  dialog.showModal();
  $("new-key").focus();
}

async function disconnect() {
  const yes = await confirmWith({
    title: "Disconnect Stripe?",
    text: "Syncing customers, products and subscriptions stops now, and no order or contract is pushed to Stripe until you connect again. Everything already here is kept: customers, products, their links, and the history.",
    action: "Disconnect",
  });
  if (yes) await attempt(async () => { await api(scoped("connection"), { method: "DELETE" }); await loadConnection(); }, "Disconnecting…");
}

// --- syncs and their progress ------------------------------------------------------------------

const polling = {};

async function sync(kind) {
  await attempt(async () => {
    const before = (await api(scoped("sync"))).data.find((run) => run.kind === kind);
    await post("sync/" + kind);
    await watch(kind, before ? before.started_at : null, 0);
  }, "Starting the sync…");
}

async function watch(kind, previous, polls) {
  clearTimeout(polling[kind]);
  const run = (await api(scoped("sync"))).data.find((r) => r.kind === kind);
  const progress = $(kind + "-progress");
  const queued = !run || run.started_at === previous;
  if (queued && polls >= 60) { progress.textContent = "Still queued after a minute: is a worker running?"; return; }
  if (queued || run.status === "running") {  // look again in a second
    progress.textContent = queued ? "Queued…" : `Syncing… ${run.seen || 0} seen so far`;
    polling[kind] = setTimeout(() => watch(kind, previous, polls + 1).catch(fail), 1000);
    return;
  }
  progress.textContent = run.status === "failed" ? "The last sync failed: " + dash(run.error) : `Done: ${run.seen || 0} seen`;
  await loadConnection();
  if (current === kind) await loaders[kind]();
}

// --- Customers ---------------------------------------------------------------------------------

const customerPages = new Pages("customers-pager", () => attempt(loadCustomers));
const customerReviewPages = new Pages("customers-review-pager", () => attempt(loadCustomerReview));

async function loadCustomers() {
  if (!$("customers-review-view").hidden) return loadCustomerReview();
  const params = customerPages.query(new URLSearchParams());
  if ($("customers-q").value.trim()) params.set("q", $("customers-q").value.trim());
  if ($("customers-status").value) params.set("match_status", $("customers-status").value);
  const page = await api(scoped("customers?" + params));
  rows($("customers-rows"), page.data.map((c) => [
    c.name, c.email, c.id,
    pill(c.deleted ? "Deleted in Stripe" : STATUS_WORDS[c.match_status] || c.match_status, c.match_status),
    c.veles_customer_name || c.veles_customer_id,
    c.match_status === "matched" ? button("Unlink", () => review(() => post(`customers/${encodeURIComponent(c.id)}/unlink`), `Unlinked ${c.name || c.id}`)) : null,
  ]), 6, "No Stripe customers here yet: click Sync to read them from Stripe.");
  customerPages.show(page);
}

async function loadCustomerReview() {
  const params = customerReviewPages.query(new URLSearchParams({ match_status: "not_matched" }));
  const page = await api(scoped("customers?" + params));
  const cards = $("customers-cards");
  cards.replaceChildren();
  if (!page.data.length) cards.append(el("p", { class: "muted", text: "Every Stripe customer is matched. Nothing to review." }));
  for (const c of page.data) cards.append(customerCard(c));
  customerReviewPages.show(page);
}

function customerCard(c) {
  const id = encodeURIComponent(c.id);
  const link = (veles) => review(() => post(`customers/${id}/link`, { veles_customer_id: veles.id }), `Linked ${c.name || c.id} to ${veles.name}`);
  const candidates = el("ul");
  for (const v of c.candidate_customers || []) {
    candidates.append(el("li", {}, `${v.name}${v.email ? " — " + v.email : ""}${v.domain ? " (" + v.domain + ")" : ""} `, button("Link", () => link(v), { "aria-label": `Link to ${v.name}` })));
  }
  return el("article", { class: "card", "aria-label": c.name || c.id },
    el("h3", { text: c.name || "(no name)" }),
    el("p", { class: "muted", text: `${dash(c.email)} · ${c.id}` }),
    (c.candidate_customers || []).length ? el("p", { text: "Possible matches in Veles:" }) : el("p", { class: "muted", text: "No Veles customer has this name, email or domain." }),
    candidates,
    picker("veles/customers", "Find a Veles customer", (v) => `${v.name}${v.email ? " — " + v.email : ""}`, "Link", link),
    el("div", { class: "toolbar" }, button("Create in Veles", () => review(() => post(`customers/${id}/create`), `Created ${c.name || c.id} in Veles`))),
  );
}

// A searchable list of Veles records: type, see names, choose one.
function picker(path, label, describe, verb, choose) {
  const id = "find-" + Math.random().toString(36).slice(2);
  const input = el("input", { id, type: "search", placeholder: "Type a name", autocomplete: "off" });
  const results = el("ul", { "aria-live": "polite" });
  const search = debounce(async () => {
    const q = input.value.trim();
    results.replaceChildren();
    if (!q) return;
    try {
      const page = await api(scoped(`${path}?` + new URLSearchParams({ q, limit: "10" })));
      if (!page.data.length) results.append(el("li", { class: "muted", text: `Nothing in Veles matches “${q}”.` }));
      for (const v of page.data) results.append(el("li", {}, describe(v) + " ", button(verb, () => choose(v), { "aria-label": `${verb} ${v.name}` })));
    } catch (error) { fail(error); }
  });
  input.addEventListener("input", search);
  return el("div", {}, el("label", { for: id, text: label }), " ", input, results);
}

async function review(run, done) {
  await attempt(async () => {
    await run();
    await loadConnection();
    await loaders[current]();
    tell(done);  // stays until the next action
  }, "Saving…");
}

function showReview(noun, on) {
  $(noun + "-list").hidden = on;
  $(noun + "-review-view").hidden = !on;
  if (on) (noun === "customers" ? customerReviewPages : productReviewPages).reset();
  attempt(loaders[noun]);
  (on ? $(noun + "-back") : $(noun + "-review")).focus();
}

// --- Products ----------------------------------------------------------------------------------

const productPages = new Pages("products-pager", () => attempt(loadProducts));
const productReviewPages = new Pages("products-review-pager", () => attempt(loadProductReview));

function velesProduct(p) {
  const name = p.veles_product_name || p.veles_product_id;
  if (!name) return null;
  return p.veles_product_url ? el("a", { href: p.veles_product_url, target: "_blank", rel: "noopener", text: name }) : name;
}

async function loadProducts() {
  if (!$("products-review-view").hidden) return loadProductReview();
  const params = productPages.query(new URLSearchParams());
  for (const [key, id] of [["q", "products-q"], ["match_status", "products-status"], ["active", "products-active"]]) {
    if ($(id).value.trim()) params.set(key, $(id).value.trim());
  }
  const page = await api(scoped("products?" + params));
  rows($("products-rows"), page.data.map((p) => {
    const id = encodeURIComponent(p.id);
    const linked = ["name_match", "import", "manual"].includes(p.match_status);
    const action = linked ? button("Unlink", () => review(() => post(`products/${id}/unlink`), `Unlinked ${p.name}`))
      : p.match_status === "ignored" ? button("Un-ignore", () => review(() => post(`products/${id}/unlink`), `${p.name} needs review again`)) : null;
    return [p.name, p.description, p.id, pill(p.active ? "Active" : "Inactive", p.active ? "" : "inactive"),
      pill(productStatus(p.match_status), p.match_status), velesProduct(p), when(p.created), action];
  }), 8, "No Stripe products here: click Sync to read them from Stripe, or change the filters.");
  productPages.show(page);
}

async function loadProductReview() {
  const params = productReviewPages.query(new URLSearchParams({ match_status: "not_matched" }));
  const page = await api(scoped("products?" + params));
  const cards = $("products-cards");
  cards.replaceChildren();
  if (!page.data.length) cards.append(el("p", { class: "muted", text: "Every Stripe product is matched or ignored. Nothing to review." }));
  for (const p of page.data) cards.append(productCard(p));
  productReviewPages.show(page);
}

function productCard(p) {
  const id = encodeURIComponent(p.id);
  const prices = (p.prices || []).filter((price) => price.active).map((price) => money(price.unit_amount, price.currency) + (price.recurring_interval ? " / " + price.recurring_interval : "")).filter(Boolean);
  const card = el("article", { class: "card", "aria-label": p.name },
    el("h3", { text: p.name }),
    el("p", { class: "muted", text: `${dash(p.description)} · ${p.id}${prices.length ? " · " + prices.join(", ") : ""}` }));
  if (!p.active) {
    card.append(el("p", {}, pill("Inactive", "inactive"), " Inactive in Stripe: reactivate it in your Stripe dashboard to match or import it."));
    card.append(el("div", { class: "toolbar" }, button("Import", null, { disabled: true }), button("Ignore", () => review(() => post(`products/${id}/ignore`), `Ignored ${p.name}`))));
    return card;
  }
  const match = (v) => review(() => post(`products/${id}/match`, { veles_product_id: v.id }), `Matched ${p.name} to ${v.name}`);
  for (const v of p.candidate_products || []) card.append(el("p", {}, `Possible match: ${v.name}${v.sku ? " (" + v.sku + ")" : ""} `, button("Match", () => match(v), { "aria-label": `Match to ${v.name}` })));
  card.append(picker("veles/products", "Match to an existing Veles product", (v) => `${v.name}${v.sku ? " (" + v.sku + ")" : ""}`, "Match", match));
  card.append(el("div", { class: "toolbar" },
    button("Import", () => review(() => post(`products/${id}/import`), `Imported ${p.name} into the price book`)),
    button("Ignore", () => review(() => post(`products/${id}/ignore`), `Ignored ${p.name}`))));
  return card;
}

// --- Subscriptions -----------------------------------------------------------------------------

const subscriptionPages = new Pages("subscriptions-pager", () => attempt(loadSubscriptions));

async function loadSubscriptions() {
  const params = subscriptionPages.query(new URLSearchParams());
  if ($("subscriptions-q").value.trim()) params.set("q", $("subscriptions-q").value.trim());
  if ($("subscriptions-status").value) params.set("status", $("subscriptions-status").value);
  const page = await api(scoped("subscriptions?" + params));
  rows($("subscriptions-rows"), page.data.map((s) => [
    s.customer_name || s.customer, pill(s.status + (s.cancel_at_period_end ? " (cancels at period end)" : "")),
    el("ul", {}, ...s.items.map((i) => el("li", { text: `${i.quantity} × ${i.product_name || i.product || i.price}${i.unit_amount !== null && i.unit_amount !== undefined ? " at " + money(i.unit_amount, i.currency) + (i.interval ? " / " + i.interval : "") : ""}` }))),
    when(s.current_period_end), s.veles_contract_id, s.id,
  ]), 6, "No subscriptions here.");
  subscriptionPages.show(page);
}

// --- Dead letters ------------------------------------------------------------------------------

let deadIndex = 0;
const deadPages = { load: () => attempt(loadDead) };

function deadFilter() {
  const filter = {};
  if ($("dead-kind").value) filter.kind = $("dead-kind").value;
  if ($("dead-type").value.trim()) filter.type = $("dead-type").value.trim();
  return filter;
}

async function loadDead() {
  const page = await api(scoped("dead-letters?" + new URLSearchParams(deadFilter())));
  const all = page.data;
  deadIndex = Math.min(deadIndex, Math.max(0, Math.ceil(all.length / PAGE) - 1));
  const shown = all.slice(deadIndex * PAGE, (deadIndex + 1) * PAGE);
  rows($("dead-rows"), shown.map((d) => [d.id, d.type, d.subject, String(d.attempts), d.error, when(d.last_failed_at),
    el("span", { class: "toolbar" },
      button("Replay", () => review(() => post(`dead-letters/${encodeURIComponent(d.id)}/replay`), `${d.id} sent to be tried again`)),
      button("Discard…", () => discard(d))),
  ]), 7, "No dead letters: nothing has failed for good.");
  const first = deadIndex * PAGE;
  $("dead-pager").replaceChildren(
    button("Previous", () => { deadIndex -= 1; deadPages.load(); }, { disabled: deadIndex === 0 }),
    el("span", { class: "muted", text: all.length ? `${first + 1}–${first + shown.length} of ${all.length}` : "0 of 0" }),
    button("Next", () => { deadIndex += 1; deadPages.load(); }, { disabled: first + PAGE >= all.length }),
  );
}

async function discard(d) {
  const reason = await confirmWith({ title: `Discard ${d.id}?`, text: "It will not be tried again and leaves this list; the reason is kept.", action: "Discard", reason: true });
  if (reason) await review(() => post(`dead-letters/${encodeURIComponent(d.id)}/discard`, { reason }), `${d.id} discarded`);
}

async function replayMatching() {
  const filter = deadFilter();
  await attempt(async () => {
    const dry = await post("dead-letters/replay", { ...filter, dry_run: true });
    const count = dry.replayed.length;
    if (!count) { tell("No dead letter matches these filters."); return; }
    const yes = await confirmWith({ title: `Replay ${count} dead letter${count === 1 ? "" : "s"}?`, text: "Each is tried again once; what fails again comes back here.", action: `Replay ${count}` });
    if (!yes) return;
    const done = await post("dead-letters/replay", filter);
    await loadDead();
    tell(`${done.replayed.length} sent to be tried again`);
  }, "Counting…");
}

// --- tabs, workspaces, start -------------------------------------------------------------------

const loaders = {
  general: loadConnection, customers: loadCustomers, products: loadProducts,
  subscriptions: loadSubscriptions, "dead-letters": loadDead,
};
const tabs = () => [...document.querySelectorAll('[role="tab"]')];

function select(tab, focus) {
  current = tab.getAttribute("aria-controls");
  for (const t of tabs()) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  attempt(async () => { await loadConnection(); if (current !== "general") await loaders[current](); });
}

async function loadWorkspaces() {
  if (!session.operator) {
    workspace = session.workspace_id || "default";
    $("who").textContent = `Workspace ${workspace}`;
    return;
  }
  $("who").textContent = "Operator";
  const page = await api("workspaces?limit=100");
  $("picker").hidden = page.total < 2 && !page.next_cursor;
  fillPicker(page.data);
  $("workspace-search").value = workspace;
}

function fillPicker(items) {
  $("workspace-list").replaceChildren(...items.map((w) => el("option", { value: w.id, label: w.name && w.name !== w.id ? w.name : w.id })));
}

const searchWorkspaces = debounce(async () => {
  const q = $("workspace-search").value.trim();
  try {
    const page = await api("workspaces?" + new URLSearchParams({ q, limit: "20" }));
    fillPicker(page.data);
    if (page.data.some((w) => w.id === q) && q !== workspace) pick(q);
  } catch (error) { fail(error); }
});

function pick(id) {
  workspace = id;
  for (const pages of [customerPages, customerReviewPages, productPages, productReviewPages, subscriptionPages]) pages.reset();
  deadIndex = 0;
  attempt(async () => { await loadConnection(); if (current !== "general") await loaders[current](); }, `Loading workspace ${id}…`);
}

async function logout() {
  try { await fetch("/admin/logout", { method: "POST", headers: { "X-CSRF-Token": session.csrf || "" }, credentials: "same-origin" }); }
  finally { window.location.assign("/admin"); }
}

function wire() {
  for (const tab of tabs()) tab.addEventListener("click", () => select(tab, false));
  document.querySelector('[role="tablist"]').addEventListener("keydown", (event) => {
    const all = tabs();
    const at = all.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    select(all[(to + all.length) % all.length], true);
  });
  $("connect-form").addEventListener("submit", connect);
  $("update-key").addEventListener("click", updateKey);
  $("disconnect").addEventListener("click", disconnect);
  $("customers-sync").addEventListener("click", () => sync("customers"));
  $("products-sync").addEventListener("click", () => sync("products"));
  $("customers-review").addEventListener("click", () => { select($("tab-customers"), false); showReview("customers", true); });
  $("products-review").addEventListener("click", () => { select($("tab-products"), false); showReview("products", true); });
  $("customers-back").addEventListener("click", () => showReview("customers", false));
  $("products-back").addEventListener("click", () => showReview("products", false));
  const again = (pages, load) => debounce(() => { pages.reset(); attempt(load); });
  $("customers-q").addEventListener("input", again(customerPages, loadCustomers));
  $("customers-status").addEventListener("change", again(customerPages, loadCustomers));
  for (const id of ["products-q", "products-status", "products-active"]) $(id).addEventListener(id === "products-q" ? "input" : "change", again(productPages, loadProducts));
  $("subscriptions-q").addEventListener("input", again(subscriptionPages, loadSubscriptions));
  $("subscriptions-status").addEventListener("change", again(subscriptionPages, loadSubscriptions));
  const deadAgain = debounce(() => { deadIndex = 0; attempt(loadDead); });
  $("dead-kind").addEventListener("change", deadAgain);
  $("dead-type").addEventListener("input", deadAgain);
  $("dead-replay-all").addEventListener("click", replayMatching);
  $("workspace-search").addEventListener("input", searchWorkspaces);
  $("workspace-search").addEventListener("change", () => { const id = $("workspace-search").value.trim(); if (id && id !== workspace) pick(id); });
  $("logout").addEventListener("click", logout);
}

async function start() {
  wire();
  await attempt(async () => {
    session = await api("session");
    await loadWorkspaces();
    await loadConnection();
  });
}

document.addEventListener("DOMContentLoaded", start);
