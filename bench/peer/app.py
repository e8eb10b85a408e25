"""The peer a user would pick instead: FastAPI on uvicorn, on the same backends.

Only the two endpoints the benchmark compares, written the way a careful FastAPI user
would write them (async clients, a pydantic body, no ORM on the hot path):

- ``GET /api/v1/products/{id}``: the page cached in memcached under spillway's own key
  (the same bytes spillway serves); on a miss, or with ``Cache-Control: no-cache``, the
  row from the same SQLite file (in the thread pool, as sqlite3 blocks), filled back
  with ``add`` on a miss.
- ``POST /api/v1/sales/{id}/orders``: the buyer's token checked with the same signer
  (itsdangerous, spillway's salt and secret), the body ``{"quantity": 1…100}``, then the
  same reserve.lua with the same KEYS/ARGV (``flashsale.sales.stock.reserve_call``) on the
  same redis: its reservations land in the same outbox and spillway's Celery workers
  persist them, so the benchmark audits the peer's sales with the same invariants.
  It never nudges the drainer (spillway does, at most once a second): beat drains every
  second anyway.
- ``GET /hello``: a bare JSON view, the peer's own ceiling.

Settings from the environment (set by the harness): PEER_REDIS_SOCKET,
PEER_MEMCACHED_SOCKET, PEER_DATABASE (a SQLite path), SPILLWAY_SECRET_KEY.
Run: ``uvicorn peer.app:app --workers 2 --uds …`` with ``bench/`` on the path.
"""

import asyncio
import json
import os
import sqlite3
import threading
import time
import uuid

import aiomcache
import aiomcache.pool
import redis.asyncio
from fastapi import FastAPI
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from flashsale.catalog.cache import product_key
from flashsale.sales.service import IDEMPOTENCY_KEY
from flashsale.sales.stock import LUA_DIR
from flashsale.sales.stock import reserve_call
from flashsale.users.tokens import TOKEN_MAX_AGE_SECONDS
from flashsale.users.tokens import TOKEN_SALT

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
signer = URLSafeTimedSerializer(os.environ["SPILLWAY_SECRET_KEY"], salt=TOKEN_SALT)
# Like spillway's: a blocking pool (redis-py's default pool raises past 100 connections).
store = redis.asyncio.Redis(
    connection_pool=redis.asyncio.BlockingConnectionPool(
        connection_class=redis.asyncio.UnixDomainSocketConnection,
        path=os.environ["PEER_REDIS_SOCKET"],
        max_connections=512,
        timeout=2.0,
    )
)
reserve_script = store.register_script((LUA_DIR / "reserve.lua").read_bytes())
REFUSALS = {"sold_out", "limit_exceeded", "sale_not_active"}


class UnixMemcachePool(aiomcache.pool.MemcachePool):
    """aiomcache's pool, connecting to a unix socket (the stack's memcached has no port)."""

    async def _create_new_conn(self):
        if self.size() >= self._maxsize:
            return None
        reader, writer = await asyncio.open_unix_connection(self._host)
        return aiomcache.pool.Connection(reader, writer)


# aiomcache's pool opens connections only up to its minsize and then queues for them:
# open 64 at once (per worker), or every request would wait for one shared connection.
cache = aiomcache.Client("unused")
cache._pool = UnixMemcachePool(os.environ["PEER_MEMCACHED_SOCKET"], 0, minsize=64, maxsize=64)
_local = threading.local()


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def read_product(product_id: int) -> bytes | None:
    """The product's JSON from SQLite (one connection per pool thread)."""
    if not hasattr(_local, "db"):
        _local.db = sqlite3.connect(f"file:{os.environ['PEER_DATABASE']}?mode=ro", uri=True)
    row = _local.db.execute(
        "SELECT id, name, description, price_cents, image_url FROM products WHERE id = ?",
        (product_id,),
    ).fetchone()
    if row is None:
        return None
    return json.dumps(
        {
            "id": str(row[0]),
            "name": row[1],
            "description": row[2],
            "price_cents": row[3],
            "image_url": row[4],
        }
    ).encode()


@app.get("/hello")
async def hello():
    return {"hello": "world"}


@app.get("/api/v1/products/{product_id}")
async def product(product_id: int, request: Request):
    key = product_key(product_id).encode()
    no_cache = "no-cache" in request.headers.get("cache-control", "")
    body = None if no_cache else await cache.get(key)
    if body is None:
        body = await run_in_threadpool(read_product, product_id)
        if body is None:
            return error(404, "not_found", f"Product {product_id} does not exist.")
        if not no_cache:
            await cache.add(key, body, exptime=300)
    return Response(body, media_type="application/json")


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    quantity: int = Field(ge=1, le=100)


@app.post("/api/v1/sales/{sale_id}/orders")
async def purchase(sale_id: int, request: Request):
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        user_id = signer.loads(token, max_age=TOKEN_MAX_AGE_SECONDS)["uid"]
    except (BadSignature, KeyError, TypeError):
        return error(401, "unauthorized", "The token is not valid.")
    try:
        body = PurchaseIn.model_validate_json(await request.body())
    except ValidationError as exc:
        return error(400, "invalid_request", str(exc.errors()[0]["loc"]))
    idempotency = request.headers.get("idempotency-key", "")
    if idempotency and not IDEMPOTENCY_KEY.match(idempotency):
        return error(400, "invalid_request", "Idempotency-Key: 1 to 64 printable ASCII.")
    keys, args = reserve_call(
        sale_id, user_id, body.quantity, idempotency, int(time.time() * 1000), str(uuid.uuid4())
    )
    reply = await reserve_script(keys=keys, args=args)
    outcome = reply[0].decode()
    if outcome == "reserved":
        return JSONResponse({"order_id": reply[1].decode(), "status": "pending"}, status_code=202)
    if outcome == "duplicate":
        return JSONResponse({"order_id": reply[1].decode(), "status": "pending"})
    if outcome in REFUSALS:
        return error(409, outcome, f"Sale {sale_id}: {outcome}.")
    return error(404, "not_found", f"Sale {sale_id} does not exist.")
