"""An in-memory feedback store with the adapter's semantics (all or nothing, once per row), and faults."""

from datetime import UTC, datetime

from functions.feedback.labels import conflict, same_value
from functions.feedback.store import Outcome, StoredLabel


class FakeFeedbackStore:
    def __init__(self):
        self.items: dict[tuple[str, str, int], StoredLabel] = {}
        self.fail: Exception | None = None  # raised by the next write (then cleared)
        self.writes = 0

    def _fault(self) -> None:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error

    def put_labels(self, labels: list[StoredLabel]) -> list[Outcome]:
        self._fault()
        existing = {x.key: self.items[(x.model, *x.key)] for x in labels if (x.model, *x.key) in self.items}
        clashes = [x.key for x in labels if x.key in existing and not same_value(existing[x.key].label, x.label)]
        if clashes:
            raise conflict(clashes)
        for label in labels:
            if label.key not in existing:
                self.items[(label.model, *label.key)] = label
                self.writes += 1
        return ["unchanged" if x.key in existing else "stored" for x in labels]

    def put_label(self, label: StoredLabel) -> Outcome:
        return self.put_labels([label])[0]

    def labels_since(self, model: str, since: datetime) -> list[StoredLabel]:
        start = since.astimezone(UTC).isoformat(timespec="microseconds")
        return [x for (m, _, _), x in self.items.items() if m == model and x.received_at >= start]
