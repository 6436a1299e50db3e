"""Infrastructure: the functions that change the registry, and only they, may put events on the default bus."""

import json

from tests.infra.test_operations import functions_by_handler
from tests.infra.test_stack import resources

ANNOUNCERS = {"registry.handler.register_model", "registry.handler.promote", "rollout.handler.handler",
              "monitoring.handler.check_drift"}  # the drift check: Model Drift Detected (test_monitoring_loop)


def test_only_the_steps_that_change_the_registry_may_put_events_and_only_on_the_default_bus(template_dict):
    roles: dict[str, list] = {}
    for policy in resources(template_dict, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "events:PutEvents" in actions:
                assert statement["Effect"] == "Allow" and actions == ["events:PutEvents"], statement
                for role in policy["Properties"]["Roles"]:
                    roles.setdefault(role["Ref"], []).append(statement["Resource"])
    granted = {handler for handler, (_, props) in functions_by_handler(template_dict).items()
               if props["Role"]["Fn::GetAtt"][0] in roles}
    assert granted == ANNOUNCERS
    for resources_granted in roles.values():
        (bus,) = resources_granted
        assert ":event-bus/default" in json.dumps(bus), bus
