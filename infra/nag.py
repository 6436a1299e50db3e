"""cdk-nag acknowledgements: each one names the exact finding, on the exact resource, and says why."""

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge `finding` on `construct` and everything under it: pass the resource (an L1) itself."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def default_policy(role: iam.IRole) -> IConstruct:
    """The policy resource holding a role's grants, where cdk-nag reports their wildcards."""
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is None or policy.node.default_child is None:
        raise ValueError(f"{role.node.path} has no grants yet: acknowledge its wildcards after granting them")
    return policy.node.default_child
