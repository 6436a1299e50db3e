"""The datasets' port: one record per dataset version (model + content sha256), with its lineage.

The same content uploaded twice is one record: recording it again only adds the run to its
`runs`. data.dynamo implements it on DynamoDB.
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
