"""The naive purchase, kept only as the benchmark's baseline: one database transaction per
purchase that locks the stock, checks it and the buyer's limit, decrements, inserts.

SQLite has no row locks; ``BEGIN IMMEDIATE`` takes its write lock, the same serialisation a
``SELECT … FOR UPDATE`` on the sale's row gives on PostgreSQL.

Run: ``gunicorn -k gevent -w 2 -b 127.0.0.1:PORT 'naive_purchase_app:make_app("/path/db")'``
POST /purchase with header X-User and body {"quantity": n}.
"""

import json
import sqlite3
import threading
import uuid

PER_USER_LIMIT = 100


def make_app(path: str, stock: int = 10_000_000):
    """The WSGI app over the SQLite file at ``path`` (created with one sale)."""
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE IF NOT EXISTS sale (id INTEGER PRIMARY KEY, remaining INT)")
        setup.execute(
            "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, user TEXT, quantity INT)"
        )
        setup.execute("CREATE INDEX IF NOT EXISTS orders_user ON orders (user)")
        setup.execute("INSERT OR IGNORE INTO sale VALUES (1, ?)", (stock,))
    local = threading.local()

    def connection() -> sqlite3.Connection:
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        return local.db

    def app(environ, start_response):
        quantity = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))[
            "quantity"
        ]
        user = environ.get("HTTP_X_USER", "anonymous")
        db = connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            remaining = db.execute("SELECT remaining FROM sale WHERE id = 1").fetchone()[0]
            held = db.execute(
                "SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE user = ?", (user,)
            ).fetchone()[0]
            if held + quantity > PER_USER_LIMIT or remaining < quantity:
                db.execute("ROLLBACK")
                start_response("409 Conflict", [("Content-Type", "application/json")])
                return [b'{"error": {"code": "refused"}}']
            order_id = str(uuid.uuid4())
            db.execute("UPDATE sale SET remaining = remaining - ? WHERE id = 1", (quantity,))
            db.execute("INSERT INTO orders VALUES (?, ?, ?)", (order_id, user, quantity))
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        body = json.dumps({"order_id": order_id, "status": "confirmed"}).encode()
        start_response("202 Accepted", [("Content-Type", "application/json")])
        return [body]

    return app
