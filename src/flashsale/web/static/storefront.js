// The storefront: active and upcoming sales with a countdown from the server's clock,
// live stock over server-sent events, sign-up, purchase, order status and payment.

import {
  api, ApiError, serverNow, loadBuyer, saveBuyer, forgetBuyer, purchaseIntent, finishIntent,
} from "./api.js";

// A browser opens at most six HTTP/1.1 connections to one host, and each stream holds one:
// the most relevant sales get a live stream, the rest follow the list's refresh.
const MAX_STREAMS = 4;
const REFRESH_MS = 10000;
const SHOWN = new Set(["scheduled", "active", "sold_out"]);
const MAX_SALE_PAGES = 10;
const BADGES = {
  scheduled: "Starts soon", active: "On sale", sold_out: "Sold out", ended: "Ended",
};
const ORDER_WORDS = {
  pending: "reserved, being confirmed…",
  confirmed: "confirmed: pay to complete it",
  paid: "paid. Thank you!",
  cancelled: "cancelled: payment time ran out and the units went back on sale",
};

const cards = new Map(); // sale id → SaleCard
const products = new Map(); // product id → Promise of a product (or null)
let buyer = loadBuyer();

const $ = (selector, root = document) => root.querySelector(selector);

function statusAt(sale, remaining, now) {
  if (now >= Date.parse(sale.ends_at)) return "ended";
  if (now < Date.parse(sale.starts_at)) return "scheduled";
  return remaining <= 0 ? "sold_out" : "active";
}

function duration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(Math.floor((total % 86400) / 3600))}:${pad(Math.floor((total % 3600) / 60))}:${pad(total % 60)}`;
  return days ? `${days} d ${clock}` : clock;
}

function price(cents) {
  return (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function product(id) {
  if (!products.has(id)) {
    products.set(id, api("GET", `/api/v1/products/${encodeURIComponent(id)}`)
      .then((answer) => answer.data).catch(() => null));
  }
  return products.get(id);
}

class SaleCard {
  constructor(sale) {
    this.sale = sale;
    this.remaining = sale.remaining;
    this.serverStatus = sale.status;
    this.stream = null;
    this.order = null; // {order_id, status}
    this.busy = false; // a purchase or payment in flight
    this.blockedUntil = 0; // after a 429 or 503: no new attempt before this (local ms)
    this.element = $("#sale-template").content.firstElementChild.cloneNode(true);
    this.element.dataset.saleId = sale.id;
    const heading = $(".sale-name", this.element);
    heading.id = `sale-${sale.id}-name`;
    $("article", this.element).setAttribute("aria-labelledby", heading.id);
    heading.textContent = `Sale ${sale.id}`;
    $(".stock", this.element).textContent = sale.stock;
    const meter = $(".stock-meter", this.element);
    meter.max = sale.stock;
    meter.low = Math.max(1, Math.floor(sale.stock / 5));
    meter.optimum = sale.stock;
    meter.setAttribute("aria-label", "Units left");
    $(".sale-limit", this.element).textContent =
      `Up to ${sale.per_user_limit} per buyer · ${Math.round(sale.payment_timeout_s / 60)} min to pay`;
    $(".buy", this.element).addEventListener("click", () => this.buy());
    $(".pay", this.element).addEventListener("click", () => this.pay());
    product(sale.product_id).then((item) => this.showProduct(item));
    this.render();
  }

  showProduct(item) {
    if (!item) return;
    $(".sale-name", this.element).textContent = item.name;
    $(".sale-description", this.element).textContent = item.description || "";
    $(".sale-price", this.element).textContent = price(item.price_cents);
  }

  get status() {
    // The stream reports changes within a fraction of a second; between two reports the
    // corrected clock moves the sale on at the exact instant it starts or ends.
    const byClock = statusAt(this.sale, this.remaining, serverNow());
    if (this.serverStatus === "ended") return "ended";
    return byClock === "scheduled" || byClock === "ended" ? byClock : (
      this.serverStatus === "sold_out" || this.remaining <= 0 ? "sold_out" : "active");
  }

  update(remaining, status) {
    this.remaining = remaining;
    this.serverStatus = status;
    this.render();
  }

  follow() {
    if (this.stream || this.status === "ended") return;
    this.stream = new EventSource(`/api/v1/sales/${encodeURIComponent(this.sale.id)}/stream`);
    this.stream.addEventListener("open", () => this.showLive(true));
    this.stream.addEventListener("message", (event) => {
      const state = JSON.parse(event.data);
      this.showLive(true);
      this.update(state.remaining, state.status);
    });
    // EventSource reconnects by itself (after the `retry:` the server sent); it gives up
    // only on an answer that is not a stream, such as a 404.
    this.stream.addEventListener("error", () => {
      this.showLive(false);
      if (this.stream && this.stream.readyState === EventSource.CLOSED) this.unfollow();
    });
  }

  unfollow() {
    if (this.stream) this.stream.close();
    this.stream = null;
    this.showLive(false);
  }

  showLive(on) {
    $(".live", this.element).hidden = !on;
  }

  say(text, tone = "info") {
    const message = $(".sale-message", this.element);
    message.textContent = text;
    message.dataset.tone = tone;
  }

  render() {
    const status = this.status;
    const el = this.element;
    el.dataset.status = status;
    $(".badge", el).textContent = BADGES[status];
    $(".remaining", el).textContent = this.remaining;
    $(".stock-meter", el).value = this.remaining;
    const now = serverNow();
    const clock = $(".sale-clock", el);
    if (status === "scheduled") {
      clock.textContent = `Starts in ${duration(Date.parse(this.sale.starts_at) - now)}`;
    } else if (status === "ended") {
      clock.textContent = `Ended ${new Date(this.sale.ends_at).toLocaleString()}`;
    } else {
      clock.textContent = `Ends in ${duration(Date.parse(this.sale.ends_at) - now)}`;
    }
    if (status === "ended" && this.stream) this.unfollow();
    this.renderBuyButton(status);
    this.renderOrder();
  }

  renderBuyButton(status) {
    const button = $(".buy", this.element);
    const holding = this.order && this.order.status !== "cancelled";
    button.hidden = Boolean(holding);
    const waitMs = this.blockedUntil - Date.now();
    let label = "Buy now";
    if (this.busy) label = "Buying…";
    else if (status === "scheduled") label = "Not started yet";
    else if (status === "ended") label = "Sale ended";
    else if (status === "sold_out") label = "Sold out";
    else if (waitMs > 0) label = `Retry in ${Math.ceil(waitMs / 1000)} s`;
    button.textContent = label;
    button.disabled = this.busy || status !== "active" || waitMs > 0;
    button.setAttribute("aria-busy", String(this.busy));
  }

  renderOrder() {
    const box = $(".order", this.element);
    box.hidden = !this.order;
    if (!this.order) return;
    box.dataset.orderStatus = this.order.status;
    $(".order-status", box).textContent = ORDER_WORDS[this.order.status] || this.order.status;
    $(".order-id", box).textContent = `Order ${this.order.order_id}`;
    const pay = $(".pay", box);
    pay.hidden = this.order.status !== "confirmed";
    pay.disabled = this.busy || this.blockedUntil > Date.now();
    pay.textContent = this.busy ? "Paying…" : "Pay";
  }

  tick() {
    // Leave a 429/503 pause, count down, move the status on by the clock.
    this.render();
  }

  holdOff(error) {
    const seconds = error.retryAfter || 1;
    this.blockedUntil = Date.now() + seconds * 1000;
    setTimeout(() => this.render(), seconds * 1000 + 50);
    return seconds;
  }

  explain(error, action) {
    if (error.status === 429) {
      const seconds = this.holdOff(error);
      this.say(`Too many requests right now. You can retry in ${seconds} s.`, "warn");
    } else if (error.status === 503 || error.status === 502 || error.status === 504) {
      const seconds = this.holdOff(error);
      this.say(`The shop is busy or briefly unavailable; nothing was ${action}. Retry in ${seconds} s.`, "warn");
    } else if (error.status === 401) {
      signOut("Your sign-up is no longer valid: please sign up again.");
    } else if (error.status === 0) {
      this.say(`${error.message} Nothing was ${action} twice: retrying is safe.`, "warn");
    } else {
      this.say(error.message, "error");
    }
  }

  async buy() {
    if (this.busy) return; // a double click: the first click's request is in flight
    if (!buyer) {
      setAccountMessage("Sign up with your name first, then buy.", "warn");
      $("#signup-name").focus();
      return;
    }
    const who = buyer;
    const key = purchaseIntent(who, this.sale.id);
    this.busy = true;
    this.say("Reserving…");
    this.render();
    try {
      const answer = await api("POST", `/api/v1/sales/${encodeURIComponent(this.sale.id)}/orders`,
                               { body: { quantity: 1 }, token: who.token, idempotencyKey: key });
      finishIntent(who, this.sale.id);
      this.order = { order_id: answer.data.order_id, status: answer.data.status };
      this.say(answer.status === 202 ? "Reserved! Confirming your order…" : "You already have this order.", "ok");
      this.watchOrder();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 409) {
        finishIntent(who, this.sale.id); // refused: nothing was reserved
        if (error.code === "sold_out") this.update(0, "sold_out");
        this.say(refusal(error), error.code === "sold_out" ? "warn" : "error");
      } else {
        this.explain(error, "bought");
      }
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async watchOrder() {
    // A new order is pending until a worker persists it (well under a second when all is
    // well); poll with a growing pause until it is confirmed, paid or cancelled.
    let pause = 300;
    while (this.order && this.order.status === "pending") {
      await sleep(pause);
      pause = Math.min(pause * 1.5, 3000);
      try {
        const answer = await api("GET", `/api/v1/orders/${encodeURIComponent(this.order.order_id)}`,
                                 { token: buyer && buyer.token });
        this.order = { order_id: answer.data.order_id, status: answer.data.status };
        if (this.order.status !== "pending") this.say("");
        this.render();
      } catch (error) {
        if (!(error instanceof ApiError) || error.status === 401 || error.status === 404) {
          this.explain(error, "changed");
          return;
        }
        // 429, 503, network: keep polling, a little slower.
      }
    }
  }

  async pay() {
    if (this.busy || !this.order || !buyer) return;
    this.busy = true;
    this.say("Paying…");
    this.render();
    try {
      const answer = await api("POST", `/api/v1/orders/${encodeURIComponent(this.order.order_id)}/pay`,
                               { token: buyer.token });
      this.order.status = answer.data.status;
      this.say("Payment received.", "ok");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 409) {
        this.say(error.message, "error");
        this.order.status = "pending";
        this.watchOrder(); // learn whether it is still being confirmed or was cancelled
      } else {
        this.explain(error, "charged");
      }
    } finally {
      this.busy = false;
      this.render();
    }
  }
}

function refusal(error) {
  if (error.code === "sold_out") return "Sold out: every unit is taken. Cancelled orders return units, so watch the count.";
  if (error.code === "limit_exceeded") return "You already hold as many units of this sale as one buyer may.";
  if (error.code === "sale_not_active") return "This sale is not on right now.";
  return error.message;
}

function setAccountMessage(text, tone = "info") {
  const message = $("#account-message");
  message.textContent = text;
  message.dataset.tone = tone;
}

function renderAccount() {
  $("#signup").hidden = Boolean(buyer);
  $("#signed-in").hidden = !buyer;
  $("#buyer-name").textContent = buyer ? buyer.name : "";
}

function signOut(reason = "") {
  forgetBuyer();
  buyer = null;
  for (const card of cards.values()) {
    card.order = null;
    card.render();
  }
  renderAccount();
  setAccountMessage(reason, reason ? "warn" : "info");
}

async function signUp(event) {
  event.preventDefault();
  const input = $("#signup-name");
  const name = input.value.trim();
  if (!name) {
    setAccountMessage("Enter a name (1 to 200 characters).", "error");
    input.focus();
    return;
  }
  const button = $("#signup-button");
  button.disabled = true;
  try {
    const answer = await api("POST", "/api/v1/users", { body: { name } });
    buyer = { name, user_id: answer.data.user_id, token: answer.data.token };
    saveBuyer(buyer);
    renderAccount();
    setAccountMessage(`Welcome, ${name}. You can buy now.`, "ok");
    loadOrders();
  } catch (error) {
    const wait = error.retryAfter ? ` Retry in ${error.retryAfter} s.` : "";
    setAccountMessage(`${error.message}${wait}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function loadOrders() {
  if (!buyer) return;
  try {
    const answer = await api("GET", "/api/v1/users/me/orders", { token: buyer.token });
    // Newest first: the first order of each sale is the one to show.
    for (const order of answer.data.items.slice().reverse()) {
      const card = cards.get(order.sale_id);
      if (!card) continue;
      card.order = { order_id: order.order_id, status: order.status };
      card.render();
      if (order.status === "pending") card.watchOrder();
    }
  } catch (error) {
    if (error.status === 401) signOut("Your sign-up is no longer valid: please sign up again.");
  }
}

function rank(card) {
  return { active: 0, scheduled: 1, sold_out: 2, ended: 3 }[card.status];
}

function arrange() {
  // Active sales first (latest started first), then upcoming ones (soonest first), then sold
  // out. Ids are random, so they only break ties: they say nothing of which sale is newer.
  const startsAt = (card) => Date.parse(card.sale.starts_at);
  const ordered = [...cards.values()].sort((a, b) => rank(a) - rank(b)
    || (rank(a) === 1 ? startsAt(a) - startsAt(b) : startsAt(b) - startsAt(a))
    || Number(b.sale.id) - Number(a.sale.id));
  const list = $("#sales");
  ordered.forEach((card, index) => {
    if (list.children[index] !== card.element) list.insertBefore(card.element, list.children[index] || null);
    if (index < MAX_STREAMS && card.status !== "ended") card.follow();
    else card.unfollow();
  });
}

// The sales shown, on now or coming up, a page of 100 at a time (ended ones are left out
// by the server; a card already shown ends by the server's clock).
async function listShownSales() {
  const query = [...SHOWN].map((status) => `status=${status}`).join("&");
  const sales = [];
  for (let page = 1; page <= MAX_SALE_PAGES; page += 1) {
    const answer = await api("GET", `/api/v1/sales?${query}&per_page=100&page=${page}`);
    sales.push(...answer.data.items);
    if (page * answer.data.per_page >= answer.data.total) break;
  }
  return sales;
}

// Fetch the sales list: new sales get a card, cards without a stream get fresh numbers.
// Returns the pause before the next refresh (sooner after a failure, as Retry-After says).
async function refreshSales() {
  try {
    let added = false;
    for (const sale of await listShownSales()) {
      const card = cards.get(sale.id);
      if (card) {
        if (!card.stream) card.update(sale.remaining, sale.status);
      } else if (SHOWN.has(sale.status)) {
        cards.set(sale.id, new SaleCard(sale));
        added = true;
      }
    }
    arrange();
    $("#sales-message").textContent = cards.size ? "" : "No sales on or coming up right now. This page shows new ones as they are announced.";
    $("#sales-message").dataset.tone = "info";
    if (added) loadOrders();
    return REFRESH_MS;
  } catch (error) {
    const seconds = Math.max(error.retryAfter || 0, 2);
    $("#sales-message").textContent = `The sales could not be loaded: ${error.message} Retrying in ${seconds} s.`;
    $("#sales-message").dataset.tone = "warn";
    return seconds * 1000;
  }
}

async function keepRefreshing() {
  setTimeout(keepRefreshing, await refreshSales());
}

async function loadCatalog() {
  // The first page of the catalog: served by nginx straight from memcached when hot.
  const list = $("#products");
  try {
    const answer = await api("GET", "/api/v1/products?page=1&per_page=20");
    list.textContent = "";
    for (const item of answer.data.items) {
      const row = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = item.name;
      const cost = document.createElement("span");
      cost.className = "price";
      cost.textContent = price(item.price_cents);
      const description = document.createElement("small");
      description.textContent = item.description || "";
      row.append(name, " ", cost, document.createElement("br"), description);
      list.append(row);
    }
    if (!answer.data.items.length) {
      list.innerHTML = "<li>No products yet: <code>spillway seed-demo</code> adds some.</li>";
    }
  } catch {
    list.innerHTML = "<li>The catalog is unavailable; retry shortly.</li>";
  }
}

async function start() {
  renderAccount();
  $("#signup").addEventListener("submit", signUp);
  $("#signout").addEventListener("click", () => signOut());
  loadCatalog();
  setInterval(() => cards.forEach((card) => card.tick()), 250);
  await keepRefreshing();
}

start();
