"""Starting pipeline executions: the port, and its Step Functions adapter.

An execution is named after its run, so starting the same run twice starts one execution.
"""

import json
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from functions import aws
from functions.settings import starter_settings
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class Executions(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> bool:
        """Start the execution `name`; False when an execution of that name exists already."""
        ...


class StepFunctionsExecutions:
    def __init__(self, client: "SFNClient", state_machine_arn: str):
        self.client = client
        self.state_machine_arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        with storage_errors(f"starting run {name}"):
            try:
                # Step Functions answers a repeated start of the same name and input with the running
                # execution, and with ExecutionAlreadyExists once it has finished: never a second one.
                self.client.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                            input=json.dumps(payload))
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                    raise
                return False
        return True


@cache
def pipeline_executions() -> StepFunctionsExecutions:
    return StepFunctionsExecutions(aws.stepfunctions(), starter_settings().state_machine_arn)
