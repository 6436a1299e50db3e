"""The local cloud's GetMetricData: exact dimensions, percentiles, SEARCH and metric math, as CloudWatch answers."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from local.metrics import evaluate, faithful_metric_data

START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)


@pytest.fixture
def cloudwatch():
    with mock_aws(), faithful_metric_data():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        data = [{"MetricName": "Latency", "Value": float(v), "Timestamp": START + timedelta(seconds=v)}
                for v in range(1, 101)]  # 100 values in the first two minutes, no dimensions
        data += [{"MetricName": "Latency", "Dimensions": [{"Name": "model", "Value": "churn"}], "Value": 1000.0,
                  "Timestamp": START + timedelta(seconds=5)}]
        data += [{"MetricName": "DriftScore", "Dimensions": [{"Name": "model", "Value": m}, {"Name": "service",
                                                                                           "Value": "monitoring"}],
                  "Value": s, "Timestamp": START + timedelta(minutes=3)} for m, s in (("churn", 0.3), ("fraud", 0.1))]
        data += [{"MetricName": "Failed", "Value": 2.0, "Timestamp": START + timedelta(minutes=4)}]
        client.put_metric_data(Namespace="Mlops", MetricData=data)
        yield client


def query(client, *queries):
    answer = client.get_metric_data(MetricDataQueries=list(queries), StartTime=START,
                                    EndTime=START + timedelta(minutes=10), ScanBy="TimestampAscending")
    return answer["MetricDataResults"]


def stat(id_: str, name: str, stat_: str, period: int = 60, dimensions=(), **extra):
    return {"Id": id_, "MetricStat": {"Metric": {"Namespace": "Mlops", "MetricName": name,
                                                 "Dimensions": list(dimensions)}, "Period": period, "Stat": stat_},
            **extra}


def test_metric_stat_matches_dimensions_exactly_and_knows_percentiles(cloudwatch):
    (p90,) = query(cloudwatch, stat("p", "Latency", "p90", period=120))
    assert p90["Values"] == [90.0]  # the dimensioned 1000 is another metric
    (count,) = query(cloudwatch, stat("c", "Latency", "SampleCount"))
    assert count["Values"] == [59.0, 41.0] and count["StatusCode"] == "Complete"
    (churn,) = query(cloudwatch, stat("m", "Latency", "Maximum", dimensions=[{"Name": "model", "Value": "churn"}]))
    assert churn["Values"] == [1000.0]


def test_search_finds_one_series_per_metric_of_the_schema(cloudwatch):
    results = query(cloudwatch, {"Id": "s", "Expression": "SEARCH('{Mlops,model,service} MetricName=\"DriftScore\"',"
                                                          " 'Maximum', 3600)"})
    assert [(r["Id"], r["Label"], r["Values"]) for r in results] == [("s", "churn monitoring", [0.3]),
                                                                      ("s", "fraud monitoring", [0.1])]
    assert query(cloudwatch, {"Id": "s", "Expression": "SEARCH('{Mlops,model} MetricName=\"DriftScore\"', "
                                                       "'Maximum', 60)"}) == []  # dimension names match exactly


def test_metric_math_fills_and_adds(cloudwatch):
    results = query(cloudwatch, stat("failed", "Failed", "Sum", ReturnData=False),
                    stat("count", "Latency", "SampleCount", ReturnData=False),
                    {"Id": "e", "Expression": "FILL(failed, 0) + FILL(count, 0) * 2", "Label": "sum"})
    assert [(r["Id"], r["Label"], r["Values"]) for r in results] == [("e", "sum", [118.0, 82.0, 2.0])]
    (bad,) = query(cloudwatch, {"Id": "x", "Expression": "ANOMALY_DETECTION_BAND(m1)"})
    assert bad["StatusCode"] == "InternalError" and bad["Values"] == []


def test_evaluate_drops_what_is_not_a_number():
    t0, t1 = START, START + timedelta(minutes=1)
    assert evaluate("a / b", {"a": {t0: 1.0, t1: 2.0}, "b": {t0: 0.0, t1: 4.0}})[t1] == 0.5
    assert evaluate("-a + 1", {"a": {t0: 1.0}}) == {t0: 0.0}
    with pytest.raises(ValueError):
        evaluate("__import__('os')", {})
