"""Features: the online store (latest feature values per entity, expiring by TTL)."""

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.settings import PlatformSettings
from infra.storage import removal_policy, table


class Features(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings):
        super().__init__(scope, id)
        self.online: dynamodb.Table = table(
            self, "Online", removal_policy(settings.removal_policy), ttl_attribute="expires_at",
            deletion_protection=settings.deletion_protection,
        )
