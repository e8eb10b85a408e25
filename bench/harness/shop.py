"""The storefront's API as the bench drives it: an admin, buyers signed up in bulk, sales."""

import datetime
from concurrent.futures import ThreadPoolExecutor

import requests


class Shop:
    """The API at ``base_url``; ``admin`` is the admin's Authorization header."""

    def __init__(self, base_url: str, admin: dict):
        self.base_url = base_url
        self.admin = admin
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs):
        """One request; its JSON. An error status raises."""
        response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def signup(self, count: int, prefix: str = "bench", start: int = 0) -> list[str]:
        """Tokens of ``count`` new buyers (16 sign-ups at a time)."""

        def one(n: int) -> str:
            answer = requests.post(
                f"{self.base_url}/api/v1/users", timeout=30, json={"name": f"{prefix}{n}"}
            )
            answer.raise_for_status()
            return answer.json()["token"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, range(start, start + count)))

    def new_sale(self, stock: int, per_user_limit: int, **fields) -> dict:
        """An active sale of the first product (one is made if there is none), for two
        hours, payments due in a day: nothing expires during a run."""
        products = self.call("GET", "/api/v1/products")["items"]
        product = (
            products[0]
            if products
            else self.call(
                "POST",
                "/api/v1/products",
                headers=self.admin,
                json={"name": "Bench lamp", "price_cents": 100},
            )
        )
        ends = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
        created = self.call(
            "POST",
            "/api/v1/sales",
            headers=self.admin,
            json={
                "product_id": product["id"],
                "stock": stock,
                "per_user_limit": per_user_limit,
                "payment_timeout_s": 86_400,
                "ends_at": ends.isoformat(),
                **fields,
            },
        )
        return self.call("GET", f"/api/v1/sales/{created['id']}")
