"""Progress while a run goes: scenario, step, elapsed time and an estimate of what is left."""

import time


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Each scenario declares an estimate of its duration; the ETA is what remains of the
    current one plus the estimates of those not started."""

    def __init__(self, estimates: dict[str, float]):
        self.estimates = dict(estimates)
        self.started = time.monotonic()
        self.current: str | None = None
        self.current_started = self.started
        self.index = 0

    def scenario(self, name: str) -> None:
        self.current, self.current_started = name, time.monotonic()
        self.index += 1
        self.step(f"starting ({self.index}/{len(self.estimates)})")

    def remaining(self) -> float:
        now = time.monotonic()
        names = list(self.estimates)
        later = names[names.index(self.current) + 1 :] if self.current in names else names
        current = 0.0
        if self.current in self.estimates:
            current = max(5.0, self.estimates[self.current] - (now - self.current_started))
        return current + sum(self.estimates[name] for name in later)

    def step(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(
            f"[{clock(elapsed)} elapsed, ~{clock(self.remaining())} left] "
            f"{self.current or 'setup'}: {message}",
            flush=True,
        )
