"""Online-store enrichment: an instance that names its entity (the spec's `entity_id`) gets that entity's
latest features from the online store for the features it leaves out, as Feast's online serving does.

The values an instance gives win over the stored ones; the entity id itself is not a feature and is
dropped. The entities of a request are read at once (features.dynamo: one BatchGetItem per 100 keys),
and only those of instances that leave a feature out. An entity id is a non-empty string or an integer
(its canonical key, features.keys); an instance that needs the store and names an entity it does not
hold (never published, or expired) is a 422 naming the instance, as is a malformed id. A feature the
store holds no value for (it was missing in the training row) stays missing: the signature check names
it. What the model scores, and what is captured, is the enriched instance.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.errors import shown
from functions.features.keys import MAX_ENTITY_BYTES, entity_key
from functions.serving.predict import Problem, refuse
from functions.spec import ModelSpec

# The stored features of entities by their canonical key (those the store holds), for entity ids.
Lookup = Callable[[list[str]], dict[str, dict[str, Any]]]


def _key(value: Any) -> str | None:
    """An entity id's canonical key: a string or an integer only (a float, boolean or object is refused)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return entity_key(value)


def enrich(instances: Sequence[Any], spec: ModelSpec, lookup: Lookup) -> list[Any]:
    """The instances, those that name their entity completed from the online store (see the module's doc)."""
    entity = spec.entity_id
    named = [] if entity is None else [i for i, x in enumerate(instances) if isinstance(x, Mapping) and entity in x]
    if entity is None or not named:
        return list(instances)
    problems: list[Problem] = []
    keys: dict[int, str] = {}
    for index in named:
        key = _key(instances[index][entity])
        if key is None:
            problems.append(Problem(index, entity, f"must be an entity id: a non-empty string or an integer of at "
                                                   f"most {MAX_ENTITY_BYTES} bytes"))
        elif any(name not in instances[index] for name in spec.feature_names):
            keys[index] = key
    refuse(problems, spec.features)
    stored = lookup(sorted(set(keys.values()))) if keys else {}
    enriched = list(instances)
    for index in named:
        given = {name: value for name, value in instances[index].items() if name != entity}
        if index in keys:
            features = stored.get(keys[index])
            if features is None:
                problems.append(Problem(index, entity, f"names entity {shown(keys[index], 60)}, which has no "
                                                       "features in the online store: send its features"))
                continue
            given = {**{name: features[name] for name in spec.feature_names
                        if name not in given and features.get(name) is not None}, **given}
        enriched[index] = given
    refuse(problems, spec.features)
    return enriched
