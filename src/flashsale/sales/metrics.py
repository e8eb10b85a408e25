"""The flash sale's own Prometheus metrics (the runtime's are in spillway.metrics)."""

from prometheus_client import Counter

from spillway.metrics.registry import BoundChildren

RESERVATIONS = Counter(
    "spillway_reservations_total",
    "Purchase attempts by what admission decided (reserve.lua's outcome).",
    ["outcome"],
)
# reserve.lua says "reserved"; operators read "admitted".
OUTCOME_NAMES = {"reserved": "admitted"}
_reservations = BoundChildren(RESERVATIONS)


def reservation(outcome: str) -> None:
    _reservations[(OUTCOME_NAMES.get(outcome, outcome),)].inc()
