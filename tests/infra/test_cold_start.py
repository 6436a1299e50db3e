"""Cold start: provisioned concurrency on the predict function's `live` alias, as a setting (default none)."""

import pytest
from pydantic import ValidationError

from infra.settings import PlatformSettings


def live_alias(template: dict) -> dict:
    ((_, alias),) = [(k, v) for k, v in template["Resources"].items()
                     if v["Type"] == "AWS::Lambda::Alias" and v["Properties"]["Name"] == "live"]
    return alias["Properties"]


def test_by_default_nothing_is_provisioned_and_the_function_keeps_its_2_gb(template_dict):
    assert "ProvisionedConcurrencyConfig" not in live_alias(template_dict)
    memory = [r["Properties"]["MemorySize"] for r in template_dict["Resources"].values()
              if r["Type"] == "AWS::Lambda::Function"
              and r["Properties"].get("ImageConfig", {}).get("Command") == ["functions.serving.handler.handler"]]
    assert memory == [2048]


def test_a_setting_above_zero_provisions_that_many_environments_on_the_live_alias():
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import PlatformStack

    stack = PlatformStack(cdk.App(), "ColdStart", PlatformSettings(serving_provisioned_concurrency=3))

    assert live_alias(Template.from_stack(stack).to_json())["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 3}


@pytest.mark.parametrize("fields", [{"serving_provisioned_concurrency": -1},
                                    {"serving_provisioned_concurrency": 5, "serving_concurrency": 4}])
def test_provisioned_concurrency_is_not_negative_nor_above_the_reserved(fields):
    with pytest.raises(ValidationError):
        PlatformSettings(**fields)
