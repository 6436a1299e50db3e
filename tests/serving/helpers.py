"""What the predict API's tests share: a valid instance, and a clock the test moves."""

# One customer, exactly the churn signature.
INSTANCE = {"tenure_months": 3.0, "monthly_charges": 80.5, "support_calls": 2, "plan": "basic"}


class Clock:
    """A monotonic clock that moves only when told to (ModelCache's `clock`)."""

    def __init__(self, start: float = 1_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
