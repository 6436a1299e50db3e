"""The state of a pipeline execution, as each step receives it (the whole state, every time).

start_pipeline builds the input; each step's result is stored at its own path ($.dataset,
$.validation, ...); a caught failure is at $.error. The steps read what earlier steps wrote.
"""

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.errors import InvalidInput
from functions.settings import settings
from functions.spec import NAME_PATTERN, ModelSpec

if TYPE_CHECKING:
    from functions.registry.store import RegistryStore

# Where a step's event holds its run: the correlation id of the step's logs.
RUN_ID = "run_id"

# The steps in order, with the path of their results: the first missing one is where a run stopped.
STEPS = [
    ("dataset", "RegisterDataset"),
    ("validation", "ValidateDataset"),
    ("features", "BuildFeatures"),
    ("training", "Train"),
    ("evaluation", "Evaluate"),
    ("registration", "RegisterModel"),
    ("promotion", "Promote"),
    ("run", "RecordSuccess"),
]


class PipelineState(BaseModel):
    model_config = ConfigDict(extra="allow")

    run_id: str = Field(min_length=1, max_length=80)
    model: str = Field(pattern=NAME_PATTERN)
    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    version_id: str | None = None
    dataset: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    features: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    registration: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def require(self, path: str) -> dict[str, Any]:
        """The result an earlier step stored at `path` (InvalidInput when that step did not run)."""
        value = getattr(self, path, None)
        if not isinstance(value, dict):
            raise InvalidInput(f"the pipeline state has no {path!r} result: the step that writes it did not run")
        return value

    def spec(self, registry: "RegistryStore") -> ModelSpec:
        """The spec as the run registered its dataset (a spec edited mid-run does not change the run)."""
        raw = (self.dataset or {}).get("spec")
        return ModelSpec.model_validate(raw) if raw else registry.get_spec(self.model)

    @property
    def output_bucket(self) -> str:
        """Where the run writes: the platform's data bucket (the upload's when unset, as in unit tests)."""
        return settings().data_bucket or self.bucket

    def failed_step(self) -> str:
        for path, step in STEPS:
            if getattr(self, path, None) is None:
                return step
        return "unknown"


def parse_state(event: Any) -> PipelineState:
    try:
        return parse(event=event, model=PipelineState)
    except ValidationError as error:
        fields = sorted({".".join(map(str, e["loc"])) or "state" for e in error.errors()})
        raise InvalidInput(f"the pipeline state is malformed (fields: {', '.join(fields)})") from error
    except Exception as error:  # noqa: BLE001 - powertools wraps non-dict input in its own error
        raise InvalidInput("the pipeline state is malformed") from error
