"""The controls of the cdk-nag check, run in their own process by tests/background.py
(python -m tests.infra.nag_control OUTDIR):

- a stack with known findings, under the app's AwsSolutions set-up: its synth must fail, naming
  them, so that the app's green synth means it has none;
- the platform itself with every acknowledgement left out (OUTDIR/unacknowledged): its report
  lists each finding on the resource cdk-nag reports it on, so a test can check that each
  acknowledgement sits on exactly the resources its finding is on.
"""

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

ROOT = Path(__file__).resolve().parents[2]


def synthesize(outdir: str) -> None:
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "Control")
    s3.Bucket(stack, "Unlogged")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


class _Unacknowledged:
    """Stands in for aws_cdk.Validations in infra.nag: acknowledgements are dropped."""

    @staticmethod
    def of(construct: Any) -> "_Unacknowledged":
        return _Unacknowledged()

    def acknowledge(self, *acknowledgements: Any) -> None:
        pass


def synthesize_unacknowledged(outdir: str) -> None:
    """The platform (with cdk.json's context, as the CDK CLI synthesizes it), no finding acknowledged."""
    import infra.nag
    from app import build_app

    infra.nag.Validations = _Unacknowledged  # type: ignore[assignment,misc]
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app, _ = build_app(context=context, outdir=outdir)
    with contextlib.suppress(RuntimeError):  # jsii's ValidationFailed: the report is written
        app.synth()


if __name__ == "__main__":
    synthesize_unacknowledged(str(Path(sys.argv[1]) / "unacknowledged"))
    synthesize(sys.argv[1])
