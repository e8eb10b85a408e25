"""Books: a slow endpoint that never stalls a fast one, a cached read, and a Celery task."""

import time

from celery import shared_task
from flask import Blueprint
from flask import jsonify
from flask import request
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from bookshelf import db
from spillway.caching import MemcachedStore
from spillway.caching import ReadThrough
from spillway.extension import CachedRoute

bp = Blueprint("books", __name__)
KEY_PREFIX = "bookshelf:"
# nginx answers GET /books/<id> from memcached itself once the app has cached it.
CACHED_ROUTE = CachedRoute(location=r"^/books/[0-9]+$", key_prefix=KEY_PREFIX)
pages = ReadThrough("books", MemcachedStore(), ttl=60)


class Book(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    text: Mapped[str]
    words: Mapped[int | None]
    counted_by: Mapped[str | None]

    def to_json(self) -> bytes:
        return jsonify(
            id=self.id, title=self.title, words=self.words, counted_by=self.counted_by
        ).get_data()


@bp.get("/slow")
def slow():
    """Sleep a while (gevent's sleep: the worker serves others meanwhile)."""
    time.sleep(min(float(request.args.get("seconds", "1")), 30))
    return "slept\n"


@bp.get("/fast")
def fast():
    """Answer at once, however many slow requests are in flight."""
    return "fast\n"


@bp.post("/books")
def add_book():
    """Add a book: {"title", "text"}."""
    body = request.get_json()
    book = Book(title=body["title"], text=body["text"])
    db.session.add(book)
    db.session.commit()
    return book.to_json(), 201, {"Content-Type": "application/json"}


@bp.get("/books/<int:book_id>")
def get_book(book_id: int):
    """A book, read through memcached (the key nginx looks up: prefix + URI)."""

    def load() -> bytes | None:
        book = db.session.get(Book, book_id)
        return book.to_json() if book else None

    body = pages.get_or_load(f"{KEY_PREFIX}/books/{book_id}", load)
    if body is None:
        return jsonify(error={"code": "not_found", "message": "No such book."}), 404
    return body, 200, {"Content-Type": "application/json"}


@bp.post("/books/<int:book_id>/count")
def count(book_id: int):
    """Count the book's words in a Celery worker, not in this request."""
    count_words.delay(book_id)
    return jsonify(queued=True), 202


@shared_task
def count_words(book_id: int) -> None:
    """Runs in the worker (in the app's context): counts, stores, drops the cached page."""
    book = db.session.get(Book, book_id)
    book.words = len(book.text.split())
    book.counted_by = count_words.request.hostname
    db.session.commit()
    pages.invalidate([f"{KEY_PREFIX}/books/{book_id}"])
