"""Registry: model specs, versions, aliases, runs and the audit trail, in one table; its changes are
announced on the account's default event bus (functions/registry/events.py)."""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.settings import PlatformSettings
from infra.storage import removal_policy, table

EVENT_BUS = "default"  # where functions/registry/eventbridge.py puts the registry's events


class Registry(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings):
        super().__init__(scope, id)
        self.table: dynamodb.Table = table(self, "Table", removal_policy(settings.removal_policy),
                                           deletion_protection=settings.deletion_protection)
        self.event_bus = events.EventBus.from_event_bus_name(self, "DefaultBus", EVENT_BUS)

    def grant_announce(self, grantee: iam.IGrantable) -> None:
        """events:PutEvents on the default bus only: for the functions that change the registry."""
        self.event_bus.grant_put_events_to(grantee)
