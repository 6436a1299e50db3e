"""Registry: model specs, versions, aliases, runs and the audit trail, in one table."""

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.settings import PlatformSettings
from infra.storage import removal_policy, table


class Registry(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings):
        super().__init__(scope, id)
        self.table: dynamodb.Table = table(self, "Table", removal_policy(settings.removal_policy),
                                           deletion_protection=settings.deletion_protection)
