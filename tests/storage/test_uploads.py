"""The object an upload event names; any other event is a clear InvalidInput."""

import copy

import pytest

from functions.errors import InvalidInput
from functions.storage.uploads import Upload, uploaded_object
from tests.training.test_handler import s3_event


def test_an_upload_event_names_its_bucket_key_and_version():
    assert uploaded_object(s3_event("b", "datasets/m/x.csv")) == Upload("b", "datasets/m/x.csv", "v-1")
    assert uploaded_object(s3_event("b", "batch/m/x.csv", version_id=None)).version_id is None


def _without_key(event: dict) -> dict:
    event = copy.deepcopy(event)
    del event["detail"]["object"]["key"]
    return event


@pytest.mark.parametrize("event", [None, {}, [], "Object Created", {"detail": {}},
                                   {**s3_event("b", "k"), "detail": "<script>"}, _without_key(s3_event("b", "k"))])
def test_any_other_event_is_refused_clearly(event):
    with pytest.raises(InvalidInput, match="not an S3 'Object Created' notification"):
        uploaded_object(event)
