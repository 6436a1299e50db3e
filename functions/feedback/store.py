"""The feedback store's port: delayed labels, one per (model, request id, row), written once.

A label is the true outcome of one row a request scored (`index`: its position in the request's
`instances`). It is stored once; the same label sent again changes nothing (idempotent), another
label for the same row is a Conflict. The adapter is functions/feedback/dynamo.py; tests use an
in-memory fake (tests/feedback/fakes.py).
"""

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

Outcome = Literal["stored", "unchanged"]


class StoredLabel(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    request_id: str
    index: int = 0
    label: Any  # the class (as the model's classes hold it) or the number, exactly as JSON gives it
    received_at: str  # ISO 8601, UTC
    source: str = "api"  # "api", or the key of the uploaded file

    @property
    def key(self) -> tuple[str, int]:
        return self.request_id, self.index


class FeedbackStore(Protocol):
    def put_labels(self, labels: list[StoredLabel]) -> list[Outcome]:
        """All of `labels` or none (one transaction, at most 100): per label "stored" or "unchanged" (the same
        label was there). Raises Conflict (naming the rows) when a row already holds another label."""
        ...

    def put_label(self, label: StoredLabel) -> Outcome:
        """One label alone: "stored" or "unchanged"; Conflict when the row holds another label."""
        ...

    def labels_since(self, model: str, since: datetime) -> list[StoredLabel]:
        """The labels of `model` received at or after `since`."""
        ...
