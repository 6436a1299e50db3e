"""One drift check: a model's captured requests against the profile of its champion's training data.

The report is written to reports/drift/<model>/<iso-ts>.json and returned with its key.
"""

from datetime import UTC, datetime
from typing import Any

from functions.data.store import DatasetStore
from functions.errors import NoChampion
from functions.monitoring.captures import read_captures
from functions.monitoring.drift import drift_report, max_psi
from functions.registry.store import RegistryStore
from functions.spec import check_model_name
from functions.storage.objects import ObjectStore

REPORTS_PREFIX = "reports/drift"


def report_key(model: str, at: datetime) -> str:
    return f"{REPORTS_PREFIX}/{model}/{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}.json"


def check_model(objects: ObjectStore, registry: RegistryStore, datasets: DatasetStore, *, model: str,
                window_hours: int, psi_threshold: float, ks_pvalue: float,
                now: datetime | None = None) -> dict[str, Any]:
    """Compare the last `window_hours` of captures of `model` with its champion's training profile.

    Returns the stored report plus its "report_key". Raises UnknownModel or NoChampion.
    """
    now = now or datetime.now(UTC)
    check_model_name(model)
    spec = registry.get_spec(model)  # UnknownModel first: a clearer answer than "no champion"
    version = registry.get_alias(model, "champion")
    if version is None:
        raise NoChampion(f"model {model!r} has no champion yet: there is nothing to compare captures with")
    record = registry.get_version(model, version)
    dataset = datasets.get_dataset(model, record.dataset_id)
    window = read_captures(objects, model, hours=window_hours, now=now)
    report = drift_report(
        model=model, version=version, signature=record.trained_spec(spec).signature, profile=dataset.profile,
        instances=window.instances, window_hours=window_hours, psi_threshold=psi_threshold, ks_pvalue=ks_pvalue,
    )
    report.update({
        "dataset_id": record.dataset_id,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "requests": window.requests,
        "versions": window.versions,
        "skipped": window.skipped,
        "truncated": window.truncated,
        "drift_score": max_psi(report),
    })
    key = report_key(model, now)
    objects.put_json(key, report)
    return {**report, "report_key": key}
