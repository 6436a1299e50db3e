"""The platform's Python client: track an experiment as a run, register its model through the promotion gate,
compare runs, follow lineage, export a version for MLflow.

    import mlops

    with mlops.start_run(model="churn", tags={"owner": "ana"}) as run:
        run.log_params({"C": 0.5})
        run.log_dataset(train)
        pipeline.fit(run.features(train), train["churned"])
        run.log_metrics({"cv_roc_auc": 0.83})
        run.log_artifact("plot.png")
        print(run.register(pipeline, holdout=holdout))

It works against the running local cloud (found as the `mlops` command finds it) by default, or a
deployed stack: `mlops.start_run(model="churn", stack="MlopsPlatform")`. It never imports the CDK.
"""

from cli.platform import PlatformError
from functions.errors import DatasetInvalid, InvalidInput, MlopsError, NotFound, UnknownModel
from mlops.tracking import ActiveRun, Registration, Tracking, connect, start_run

__all__ = [
    "ActiveRun",
    "DatasetInvalid",
    "InvalidInput",
    "MlopsError",
    "NotFound",
    "PlatformError",
    "Registration",
    "Tracking",
    "UnknownModel",
    "connect",
    "start_run",
]
