#!/usr/bin/env python3
"""The CDK app: settings -> the platform stack, checked by cdk-nag's AwsSolutions pack."""

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.settings import PlatformSettings
from infra.stack import PlatformStack


def build_app(context: dict | None = None, outdir: str | None = None) -> tuple[cdk.App, PlatformStack]:
    app = cdk.App(context=context or {}, outdir=outdir)
    settings = PlatformSettings.from_context(app.node.try_get_context("mlops"))
    stack = PlatformStack(app, settings.stack_name, settings)
    # Acknowledged findings are copied into each resource's Metadata: the audit trail ships with the template.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
