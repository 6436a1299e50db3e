"""The local cloud's DynamoDB: a Query reads its partition and answers exactly as moto's own query does (items,
order, limits, LastEvaluatedKey, filters); concurrent conditional writes stay atomic."""

import random
import threading

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from moto import mock_aws

from local.dynamodb import atomic_dynamodb, linear_item_size, partition_queries


@pytest.fixture
def table():
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        created = resource.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        rng = random.Random(3)
        with created.batch_writer() as batch:
            for i in range(150):
                pk = f"P#{i % 3}"
                sk = f"{rng.choice(['A', 'H#champion', 'H#challenger', 'RUN'])}#{rng.randrange(10_000):05d}"
                batch.put_item(Item={"pk": pk, "sk": sk, "n": i, "even": i % 2 == 0})
        yield created


def queries() -> list[dict]:
    rng = random.Random(5)
    found = []
    for _ in range(40):
        key = Key("pk").eq(f"P#{rng.randrange(4)}")  # P#3 does not exist
        time = f"{rng.randrange(10_000):05d}"
        condition = rng.choice([
            None, Key("sk").begins_with("H#champion#"), Key("sk").between("H#champion#", f"H#champion#{time}"),
            Key("sk").lte(f"H#{time}"), Key("sk").gt("A#05000"), Key("sk").eq("RUN#00042"),
        ])
        query = {"KeyConditionExpression": key & condition if condition is not None else key,
                 "ScanIndexForward": rng.random() < 0.5}
        if rng.random() < 0.6:
            query["Limit"] = rng.choice([1, 2, 7, 50])
        if rng.random() < 0.3:
            query["FilterExpression"] = Attr("even").eq(True)
        found.append(query)
    return found


def pages(table, query: dict) -> list[dict]:
    """Every page of a query, following LastEvaluatedKey."""
    answers, query = [], dict(query)
    while True:
        page = table.query(**query)
        answers.append({k: page.get(k) for k in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        if "LastEvaluatedKey" not in page or len(answers) > 700:
            return answers
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_partition_query_answers_as_moto_does(table):
    expected = [pages(table, query) for query in queries()]
    with partition_queries():
        assert [pages(table, query) for query in queries()] == expected


def test_one_item_at_a_time_before_a_time_is_the_newest_in_range(table):
    with partition_queries():
        (newest,) = table.query(KeyConditionExpression=Key("pk").eq("P#1") & Key("sk").between(
            "H#champion#", "H#champion#05000"), ScanIndexForward=False, Limit=1)["Items"]
    everything = table.query(KeyConditionExpression=Key("pk").eq("P#1"))["Items"]
    assert newest["sk"] == max(i["sk"] for i in everything if "H#champion#" <= i["sk"] <= "H#champion#05000")


def test_concurrent_conditional_increments_lose_no_update(table):
    table.put_item(Item={"pk": "C", "sk": "counter", "n": 0})
    client, done = table.meta.client, []

    def increment() -> None:
        for _ in range(5):
            while True:
                n = int(table.get_item(Key={"pk": "C", "sk": "counter"}, ConsistentRead=True)["Item"]["n"])
                try:
                    client.transact_write_items(TransactItems=[{"Update": {
                        "TableName": "t", "Key": {"pk": "C", "sk": "counter"}, "UpdateExpression": "SET n = :next",
                        "ConditionExpression": "n = :n", "ExpressionAttributeValues": {":n": n, ":next": n + 1}}}])
                    done.append(n)
                    break
                except client.exceptions.TransactionCanceledException:
                    continue

    with atomic_dynamodb():
        threads = [threading.Thread(target=increment) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(done) == list(range(20)), "each increment started from the value the previous one left"
    assert table.get_item(Key={"pk": "C", "sk": "counter"})["Item"]["n"] == 20


def test_an_items_size_is_summed_once_with_moto_s_limit(table):
    # Just under and just over moto's limit, built attribute by attribute (put) and changed (update, remove).
    with linear_item_size():
        table.put_item(Item={"pk": "big", "sk": "1", "a": "x" * 200_000, "b": "y" * 200_000})
        with pytest.raises(table.meta.client.exceptions.ClientError, match="Item size (to update )?has exceeded"):
            table.put_item(Item={"pk": "big", "sk": "2", "a": "x" * 200_000, "b": "y" * 206_000})
        with pytest.raises(table.meta.client.exceptions.ClientError, match="Item size (to update )?has exceeded"):
            table.update_item(Key={"pk": "big", "sk": "1"}, UpdateExpression="SET c = :c",
                              ExpressionAttributeValues={":c": "z" * 10_000})
        table.update_item(Key={"pk": "big", "sk": "1"}, UpdateExpression="REMOVE b")
        table.update_item(Key={"pk": "big", "sk": "1"}, UpdateExpression="SET c = :c",
                          ExpressionAttributeValues={":c": "z" * 150_000})
        assert len(table.get_item(Key={"pk": "big", "sk": "1"})["Item"]["c"]) == 150_000
