// The storefront's link to the API: JSON calls with the API's error shape, the server's
// clock (from each answer's Date header), the buyer kept in localStorage, and purchase
// intents whose Idempotency-Key survives retries, double clicks and reloads.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// The server's clock, from the Date header (whole seconds): the server read its clock at
// some instant in [Date, Date + 1 s) while the request was in flight, so every answer
// bounds the offset between the two clocks from both sides. The intersection of those
// bounds narrows with each answer; we use its middle.
const clock = { low: -Infinity, high: Infinity, offset: 0 };

function observeServerDate(response, sentAt, receivedAt) {
  const date = Date.parse(response.headers.get("Date") || "");
  if (Number.isNaN(date)) return;
  const low = date - receivedAt;
  const high = date + 1000 - sentAt;
  clock.low = Math.max(clock.low, low);
  clock.high = Math.min(clock.high, high);
  if (clock.low > clock.high) {
    // A clock moved (sleep, NTP step): start again from this answer alone.
    clock.low = low;
    clock.high = high;
  }
  clock.offset = (clock.low + clock.high) / 2;
}

export function serverNow() {
  return Date.now() + clock.offset;
}

export async function api(method, path, { body, token, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const sentAt = Date.now();
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The shop cannot be reached. Check your connection and retry.");
  }
  observeServerDate(response, sentAt, Date.now());
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) return { status: response.status, data };
  const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const error = (data && data.error) || {
    code: "error", message: `The shop answered ${response.status}; retry shortly.`,
  };
  throw new ApiError(response.status, error.code, error.message,
                     Number.isFinite(seconds) ? seconds : null);
}

// The signed-up buyer: {name, user_id, token}, kept across visits.
const BUYER_KEY = "spillway.buyer";

export function loadBuyer() {
  try {
    const buyer = JSON.parse(localStorage.getItem(BUYER_KEY) || "null");
    return buyer && buyer.token && buyer.user_id ? buyer : null;
  } catch {
    return null;
  }
}

export function saveBuyer(buyer) {
  localStorage.setItem(BUYER_KEY, JSON.stringify(buyer));
}

export function forgetBuyer() {
  localStorage.removeItem(BUYER_KEY);
}

// One Idempotency-Key per purchase intent (a buyer wanting units of one sale): made on the
// first click, sent again by every retry and after a reload, dropped once the shop gave a
// final answer. So a double click, a retry after a 503 or a lost answer never buys twice.
function intentKey(buyer, saleId) {
  return `spillway.intent.${buyer.user_id}.${saleId}`;
}

function randomKey() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function purchaseIntent(buyer, saleId) {
  const name = intentKey(buyer, saleId);
  let key = localStorage.getItem(name);
  if (!key) {
    key = randomKey();
    localStorage.setItem(name, key);
  }
  return key;
}

export function finishIntent(buyer, saleId) {
  localStorage.removeItem(intentKey(buyer, saleId));
}
