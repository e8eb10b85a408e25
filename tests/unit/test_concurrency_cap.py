"""The cap on requests held open at once: per address (IPv6 by /64), per process."""

import pytest

from spillway.errors import ApiError
from spillway.security.concurrency import ConcurrencyCap


def refusal(cap: ConcurrencyCap, address: str) -> int:
    with pytest.raises(ApiError) as refused:
        cap.acquire(address)
    assert refused.value.retry_after == 7
    return refused.value.status


def test_an_address_then_the_process_is_full():
    """Two per address (429 beyond), three in all (503 beyond); releasing frees a place."""
    cap = ConcurrencyCap("streams", per_worker=3, per_address=2, retry_after=7)
    first = cap.acquire("10.0.0.1")
    cap.acquire("10.0.0.1")
    assert refusal(cap, "10.0.0.1") == 429
    cap.acquire("10.0.0.2")
    assert refusal(cap, "10.0.0.3") == 503
    cap.release(first)
    cap.acquire("10.0.0.1")
    assert (cap.open, dict(cap.by_address)) == (3, {"10.0.0.1": 2, "10.0.0.2": 1})


def test_one_ipv6_64_is_one_address():
    """Fresh addresses from one /64 share its count; the next /64 has its own."""
    cap = ConcurrencyCap("streams", per_worker=10, per_address=2, retry_after=7)
    cap.acquire("2001:db8:0:1::1")
    cap.acquire("2001:db8:0:1:ffff::2")
    assert refusal(cap, "2001:db8:0:1::3") == 429
    cap.acquire("2001:db8:0:2::1")


def test_no_per_address_cap_when_none():
    """Limits off (per_address None): only the process's cap holds."""
    cap = ConcurrencyCap("streams", per_worker=2, per_address=None, retry_after=7)
    with cap.held("10.0.0.1"), cap.held("10.0.0.1"):
        assert refusal(cap, "10.0.0.1") == 503
    assert cap.open == 0 and not cap.by_address
