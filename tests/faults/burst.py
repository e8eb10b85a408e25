"""A burst of buyers over real HTTP, as well-behaved clients: each purchase carries an
Idempotency-Key, and a 503 is retried with the same key after its Retry-After (docs/api.md:
"503: nothing reserved; safe to retry with the same key"). Every exchange is recorded
for the audit (tests/audit.py); a fault is injected once part of the burst has answered."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.audit import Answer

CLIENT_TIMEOUT = 15.0  # well past redis's 2 s socket timeout: longer is a hang


def plan(buyers: list[dict], replays: int, seed: int = 7) -> list[tuple[dict, str, int]]:
    """(buyer, Idempotency-Key, quantity) for each purchase, shuffled: two keys per buyer
    (the second for 2 units on every other buyer, which a limit of 2 refuses), and
    ``replays`` repeats of a first key."""
    rng = random.Random(seed)
    items = [(b, f"{b['user_id']}-1", 1) for b in buyers]
    items += [(b, f"{b['user_id']}-2", 1 + i % 2) for i, b in enumerate(buyers)]
    items += [(b, f"{b['user_id']}-1", 1) for b in rng.sample(buyers, replays)]
    rng.shuffle(items)
    return items


class Burst:
    """Run a plan of purchases (and optional reads between them) on a thread pool."""

    def __init__(
        self,
        base_url: str,
        sale: dict,
        purchases: list[tuple[dict, str, int]],
        reads: tuple[str, ...] = (),
        threads: int = 24,
        retry_for: float = 60.0,
    ):
        self.base_url = base_url
        self.sale = sale
        self.purchases = purchases
        self.reads = reads
        self.threads = threads
        self.retry_for = retry_for
        self.answers: list[Answer] = []
        self._done = 0
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._local = threading.local()
        self._runner: threading.Thread | None = None

    def start(self) -> "Burst":
        self._runner = threading.Thread(target=self._run, daemon=True)
        self._runner.start()
        return self

    def wait_progress(self, fraction: float, timeout: float = 120) -> None:
        """Block until ``fraction`` of the purchases have had their final answer."""
        target = int(len(self.purchases) * fraction)
        with self._progress:
            if not self._progress.wait_for(lambda: self._done >= target, timeout):
                raise AssertionError(f"burst stuck at {self._done}/{len(self.purchases)}")

    def join(self, timeout: float = 300) -> list[Answer]:
        self._runner.join(timeout)
        assert not self._runner.is_alive(), "burst did not finish"
        return self.answers

    def purchase_answers(self) -> list[Answer]:
        return [a for a in self.answers if a.method == "POST"]

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            list(pool.map(self._purchase, enumerate(self.purchases)))

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _purchase(self, numbered) -> None:
        n, (buyer, key, quantity) = numbered
        deadline = time.monotonic() + self.retry_for
        headers = {"Authorization": f"Bearer {buyer['token']}", "Idempotency-Key": key}
        path = f"/api/v1/sales/{self.sale['id']}/orders"
        while True:
            answer = self._exchange("POST", path, headers, {"quantity": quantity})
            answer.user_id, answer.key, answer.quantity = buyer["user_id"], key, quantity
            self._record(answer)
            if self.reads:
                self._record(self._exchange("GET", self.reads[n % len(self.reads)], {}, None))
            if answer.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(answer.retry_after or 1))
        with self._progress:
            self._done += 1
            self._progress.notify_all()

    def _exchange(self, method: str, path: str, headers: dict, body) -> Answer:
        answer = exchange(self._session(), f"{self.base_url}{path}", method, headers, body)
        answer.path = path
        if answer.status is None:
            self._local.__dict__.pop("session", None)  # start afresh after a broken one
        return answer

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)


def exchange(
    session: requests.Session, url: str, method: str = "GET", headers: dict = None, body=None
) -> Answer:
    """One request, recorded as an Answer whatever happens (no answer is an Answer too)."""
    started = time.monotonic()
    try:
        reply = session.request(
            method, url, headers=headers or {}, json=body, timeout=CLIENT_TIMEOUT
        )
    except requests.RequestException as exc:
        return Answer(
            method,
            url,
            None,
            transport_error=f"{type(exc).__name__}: {exc}",
            seconds=time.monotonic() - started,
        )
    try:
        parsed = reply.json()
    except ValueError:
        parsed = reply.text[:300]
    return Answer(
        method,
        url,
        reply.status_code,
        parsed,
        reply.headers.get("Content-Type", ""),
        reply.headers.get("Retry-After"),
        seconds=time.monotonic() - started,
    )
