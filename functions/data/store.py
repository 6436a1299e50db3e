"""The datasets' port: one record per dataset version (model + content sha256), with its lineage.

The same content uploaded twice is one record: recording it again only adds the run to its
`runs`. Each run identity (content + spec + code version) names the run that trains it, so an
identical upload is not trained again. data.dynamo implements it on DynamoDB.
"""

from typing import Protocol

from functions.records import DatasetVersion


class DatasetStore(Protocol):
    def put_dataset(self, dataset: DatasetVersion) -> bool:
        """Record a dataset version; False when the same content was already recorded (its runs then grow)."""
        ...

    def get_dataset(self, model: str, dataset_id: str) -> DatasetVersion:
        """NotFound when the model has no such version."""
        ...

    def list_datasets(self, model: str) -> list[DatasetVersion]:
        """Oldest first."""
        ...

    def identified_run(self, model: str, run_key: str) -> str | None:
        """The run that holds the identity `run_key` (dataset content, spec, code version), or None."""
        ...

    def claim_identity(self, model: str, run_key: str, run_id: str, *, expected: str | None) -> bool:
        """Make `run_id` the run of `run_key` if that identity is still held by `expected` (None: by no run);
        False, and no change, when another run claimed it first."""
        ...
