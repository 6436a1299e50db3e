"""Reading exactly the uploaded object, and a profile that fits its item."""

import json

import pandas as pd
import pytest

from functions.data import datasets
from functions.data.profile import profile_frame
from functions.errors import DatasetInvalid, NotFound


def test_reads_the_given_version_not_the_latest(pipeline_aws):
    first = pipeline_aws.upload("datasets/m/f.csv", b"a\n1\n")
    pipeline_aws.upload("datasets/m/f.csv", b"a\n2\n")
    assert datasets.read_upload(pipeline_aws.s3, pipeline_aws.bucket, "datasets/m/f.csv", first) == b"a\n1\n"
    assert datasets.read_upload(pipeline_aws.s3, pipeline_aws.bucket, "datasets/m/f.csv", None) == b"a\n2\n"


def test_a_url_encoded_key_from_an_event_is_decoded_when_needed(pipeline_aws):
    version = pipeline_aws.upload("datasets/m/my file.csv", b"a\n1\n")
    assert datasets.read_upload(pipeline_aws.s3, pipeline_aws.bucket, "datasets/m/my+file.csv", version) == b"a\n1\n"


def test_a_vanished_upload_is_not_found(pipeline_aws):
    with pytest.raises(NotFound, match="no longer exists"):
        datasets.read_upload(pipeline_aws.s3, pipeline_aws.bucket, "datasets/m/gone.csv", None)


def test_an_upload_too_large_for_lambda_is_refused(pipeline_aws, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 10)
    pipeline_aws.upload("datasets/m/big.csv", b"a\n" + b"1\n" * 20)
    with pytest.raises(DatasetInvalid, match="larger than"):
        datasets.read_upload(pipeline_aws.s3, pipeline_aws.bucket, "datasets/m/big.csv", None)


def test_a_wide_table_gets_a_coarser_profile_or_a_clear_error(monkeypatch):
    frame = pd.DataFrame({f"c{i}": range(50) for i in range(20)})
    full = datasets.profile_for_storage(frame)
    assert len(full["columns"]["c0"]["quantiles"]) == 101
    monkeypatch.setattr(datasets, "MAX_PROFILE_BYTES", 12_000)
    assert len(datasets.profile_for_storage(frame)["columns"]["c0"]["quantiles"]) == 21
    monkeypatch.setattr(datasets, "MAX_PROFILE_BYTES", 100)
    with pytest.raises(DatasetInvalid, match="too many columns"):
        datasets.profile_for_storage(frame)


def test_the_column_map_counts_against_the_item_budget():
    # 265 columns with 1,000-character names: the profile alone fits, profile and column map do not
    # (DynamoDB would refuse the 400 KB item with an opaque storage error).
    frame = pd.DataFrame({f"n{i:04d}" + "x" * 995: ["a"] for i in range(265)})
    assert len(json.dumps(profile_frame(frame))) <= datasets.MAX_PROFILE_BYTES
    with pytest.raises(DatasetInvalid, match="too many columns"):
        datasets.profile_for_storage(frame)
