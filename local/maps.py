"""Distributed Map states on the local cloud: what moto's interpreter lacks of AWS's behaviour.

- A `ToleratedFailurePercentage` written as an integer (`100`, as the CDK writes 100.0) is accepted,
  as AWS accepts it; moto's ASL grammar takes only a number with a fraction there.
- Tolerated failures are enforced: moto runs every item and succeeds whatever failed. As AWS does,
  the Map Run fails with States.ExceedToleratedFailureThreshold when more items failed (failed, timed
  out or aborted) than ToleratedFailureCount, or a larger share than ToleratedFailurePercentage; with
  neither declared, any failed item fails it. (moto defaults both to 0: a count of 0 beside a declared
  percentage is read as "not declared".)
- The ResultWriter's Parameters (Bucket.$, Prefix.$) are read from the Map state's input, as on AWS;
  moto reads them from the Map's results.
- The ResultWriter writes the Map Run's results: moto writes a manifest that lists no result file.
  Here each child execution is an entry of SUCCEEDED_0.json or FAILED_0.json under
  <Prefix>/<map run id>/, as AWS writes them (Name, Input, Output, Status, ...), and the manifest lists them.
"""

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
    DistributedIterationComponent,
    DistributedIterationComponentEvalInput,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import ResultWriter
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

_moto_parse = AmazonStateLanguageParser.parse
_moto_map_run = DistributedIterationComponent._map_run
_moto_put_results = ResourceEvalS3._handle_put_object
_INTEGER_PERCENTAGE = re.compile(r'("ToleratedFailurePercentage"\s*:\s*)(-?\d+)(?=\s*[,}])')


def parse(definition: str) -> Any:
    """moto's parser, the definition's integer ToleratedFailurePercentage written as the same number with a fraction."""
    return _moto_parse(_INTEGER_PERCENTAGE.sub(r"\g<1>\g<2>.0", definition))


def exceeded(failed: int, total: int, count: int, percentage: float) -> bool:
    """Whether a Map Run with `failed` of `total` items failed exceeds its tolerance (0 and 0: none declared)."""
    if count == 0 and percentage == 0:
        return failed > 0
    over_count = count > 0 and failed > count
    over_percentage = percentage > 0 and total > 0 and failed * 100 / total > percentage
    return over_count or over_percentage


def map_run(self: DistributedIterationComponent, env: Environment, eval_input: DistributedIterationComponentEvalInput
            ) -> None:
    items = list(env.stack[-1]) if env.stack and isinstance(env.stack[-1], list) else []
    _moto_map_run(self, env, eval_input)
    record = eval_input.map_run_record
    outputs = env.stack[-1] if env.stack and isinstance(env.stack[-1], list) else []
    record.local_results = list(zip(items, outputs, strict=False))  # type: ignore[attr-defined] # ResultWriter's
    counter = record.item_counter
    failed = counter.failed.get() + counter.timed_out.get() + counter.aborted.get()
    if exceeded(failed, counter.total.get(), eval_input.tolerated_failure_count,
                eval_input.tolerated_failure_percentage):
        cause = (f"The Map Run failed: {failed} of {counter.total.get()} items failed, more than it tolerates "
                 f"(ToleratedFailureCount {eval_input.tolerated_failure_count}, ToleratedFailurePercentage "
                 f"{eval_input.tolerated_failure_percentage}).")
        error = StatesErrorNameType.StatesExceedToleratedFailureThreshold.to_name()
        raise FailureEventException(FailureEvent(
            env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
            event_type=HistoryEventType.MapRunFailed,
            event_details=cast(EventDetails, {"mapRunFailedEventDetails": MapRunFailedEventDetails(
                error=error, cause=cause)})))


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def put_results(env: Environment, resource_runtime_part: Any, state_credentials: Any) -> None:
    """moto's ResultWriter (the manifest), with the result files it lacks written and listed."""
    parameters = dict(env.stack[-1])
    record = env.map_run_record_pool_manager.get_all()[-1]
    _moto_put_results(env, resource_runtime_part, state_credentials)
    details = env.stack[-1]["ResultWriterDetails"]
    s3: Any = boto_client_for(service="s3", region=resource_runtime_part.region, state_credentials=state_credentials)
    prefix = details["Key"].removesuffix("manifest.json")
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    entries: dict[str, list[dict[str, Any]]] = {"FAILED": [], "SUCCEEDED": []}
    for item, output in getattr(record, "local_results", []):
        name = str(uuid.uuid4())
        status = "FAILED" if output is None else "SUCCEEDED"
        entry = {"ExecutionArn": f"{record.map_run_arn.replace(':mapRun:', ':execution:')}:{name}",
                 "Input": json.dumps(item), "InputDetails": {"Included": True}, "Name": name,
                 "RedriveCount": 0, "RedriveStatus": "NOT_REDRIVABLE", "StartDate": _stamp(),
                 "StateMachineArn": record.map_state_machine_arn, "Status": status, "StopDate": _stamp()}
        if output is not None:
            entry.update(Output=json.dumps(output), OutputDetails={"Included": True})
        entries[status].append(entry)
    for status, listed in entries.items():
        if listed:
            body = json.dumps(listed).encode()
            key = f"{prefix}{status}_0.json"
            s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
            files[status].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn, "ResultFiles": files}
    s3.put_object(Bucket=parameters["Bucket"], Key=details["Key"], Body=json.dumps(manifest, indent=2).encode())


def write_results(self: ResultWriter, env: Environment) -> None:
    """The ResultWriter with its Parameters evaluated against the Map state's input (the results stay below)."""
    results = env.stack.pop()
    env.stack.append(env.states.get_input())
    self.parargs.eval(env=env)
    parameters = env.stack.pop()
    env.stack.pop()
    env.stack.extend([results, parameters])
    self.resource_eval.eval_resource(env=env)
