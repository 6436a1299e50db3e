"""The control of the cdk-nag check: a stack with known findings, under the app's AwsSolutions set-up.

Run in its own process by tests/background.py (python -m tests.infra.nag_control OUTDIR); the
synth must fail, naming the findings, so that the app's green synth means it has none.
"""

import sys

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks


def synthesize(outdir: str) -> None:
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "Control")
    s3.Bucket(stack, "Unlogged")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    synthesize(sys.argv[1])
