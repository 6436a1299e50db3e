"""End to end on the local cloud: a prediction's capture reaches S3 through the predict function's log
group, its subscription filter and Firehose, with no S3 call on the request path."""

import json
import re
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import MODEL, wait_for_capture

pytestmark = pytest.mark.e2e

INSTANCES = [{"tenure_months": 7.0, "monthly_charges": 99.0, "support_calls": 3, "plan": "basic"},
             {"tenure_months": 48.0, "monthly_charges": 25.0, "support_calls": 0, "plan": "premium"}]


def predict_role_statements(aws) -> list[dict]:
    functions = aws("lambda").list_functions()["Functions"]
    (predict,) = [f for f in functions if "PredictFunction" in f["FunctionName"]]
    role = predict["Role"].rsplit("/", 1)[-1]
    iam = aws("iam")
    return [statement for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
            for statement in iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]["Statement"]]


def test_a_prediction_is_captured_in_s3_by_firehose_not_by_the_predict_function(trained_model, api, aws,
                                                                              local_cloud):
    response = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": INSTANCES})
    assert response.status_code == 200, response.text
    body = response.json()

    key, records = wait_for_capture(aws, local_cloud, MODEL, body["request_id"])

    (record,) = [r for r in records if r["request_id"] == body["request_id"]]
    assert record["model"] == MODEL and record["version"] == body["version"] and record["variant"] == "champion"
    assert record["inputs"] == INSTANCES
    assert record["outputs"] == {"predictions": body["predictions"], "probabilities": body["probabilities"]}
    assert record["latency_ms"] >= 0
    at = datetime.fromisoformat(record["timestamp"]).astimezone(UTC)
    # Partitioned by model and the record's UTC day and hour, GZIP objects named as Firehose names them.
    assert re.fullmatch(rf"captures/{MODEL}/dt={at:%Y-%m-%d}/hour={at:%H}/[\w-]+-1-\d{{4}}(-\d\d){{5}}-[0-9a-f-]{{36}}"
                        r"\.gz", key), key
    # Only capture lines were delivered: no START/REPORT lines, no Powertools log records.
    assert all(set(r) >= {"mlops_capture", "model", "request_id", "inputs", "outputs"} for r in records)

    # The predict function cannot have written it: its role may write no object at all.
    statements = predict_role_statements(aws)
    assert statements, "the predict role's policies are not in IAM"
    written = [s for s in statements
               if any(a.startswith("s3:Put") or a in {"s3:*", "*"}
                      for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    assert written == [] and "captures/" not in json.dumps(statements)
