"""AWS errors become domain errors where storage is touched: callers never parse AWS error strings."""

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from functions.errors import Conflict, MlopsError, NotFound, RetryableError
from functions.storage.errors import storage_errors
from tests.conftest import client_error


@pytest.mark.parametrize("code, expected", [
    ("ConditionalCheckFailedException", Conflict),
    ("ThrottlingException", RetryableError),
    ("ProvisionedThroughputExceededException", RetryableError),
    ("SlowDown", RetryableError),
    ("TransactionConflictException", RetryableError),
    ("NoSuchKey", NotFound),
    ("NoSuchVersion", NotFound),
    ("ResourceNotFoundException", NotFound),
    ("AccessDenied", MlopsError),
    ("ValidationException", MlopsError),
])
def test_client_errors_by_code(code, expected):
    with pytest.raises(MlopsError) as caught, storage_errors("reading runs/m/r/a"):
        raise client_error(code)
    assert type(caught.value) is expected
    assert caught.value.message.startswith("reading runs/m/r/a: ") and "injected" not in caught.value.message


@pytest.mark.parametrize("error, expected", [
    (ReadTimeoutError(endpoint_url="https://aws.invalid"), RetryableError),
    (EndpointConnectionError(endpoint_url="https://aws.invalid"), RetryableError),
    (NoCredentialsError(), MlopsError),
])
def test_client_failures_without_a_reply(error, expected):
    with pytest.raises(MlopsError) as caught, storage_errors("writing runs/m/r/a"):
        raise error
    assert type(caught.value) is expected and "aws.invalid" not in caught.value.message


def test_other_errors_pass_through():
    with pytest.raises(KeyError), storage_errors("reading"):
        raise KeyError("not storage")
