"""A trained pipeline as an ONNX graph that computes in double precision, as scikit-learn does.

Numeric inputs are float64 (f0, f1, ... in signature order; categorical ones are strings), and
what skl2onnx would otherwise round to float32 stays float64:
- SimpleImputer on numbers: ONNX's Imputer op holds float32 values only (and onnxruntime runs it
  on float32 only), so it becomes Where(IsNaN(x), statistics, x) in float64;
- tree ensembles (random forest, histogram gradient boosting): their thresholds, leaf weights and
  base values go in the ai.onnx.ml opset 3 `*_as_tensor` attributes as float64 (skl2onnx writes
  float32 attributes, and a forest's answers then drift up to 0.05 from scikit-learn's); a
  regressor's output, float32 in that opset, is cast back to float64. (skl2onnx also writes a
  histogram gradient boosting's node ids and missing-value flags as numpy integers and booleans,
  which ONNX refuses: Python ints here.)
Only scikit-learn, skl2onnx and onnx are imported here, and only when converting (training side).
"""

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.spec import ModelSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
DOUBLE_ATTRIBUTES = ("nodes_values", "nodes_hitrates", "class_weights", "target_weights", "base_values")


def onnx_input_names(spec: ModelSpec) -> list[str]:
    """The ONNX model's input of each signature feature: f0, f1, ... (whatever the column names are)."""
    return [f"f{index}" for index in range(len(spec.features))]


def to_onnx(pipeline: "Pipeline", spec: ModelSpec) -> bytes:
    """The pipeline as ONNX bytes (whatever skl2onnx raises when it cannot convert it)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer

    # Safe input names, one per feature in signature order (skl2onnx would mangle "monthly charges ($)").
    initial_types = [
        (name, DoubleTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for name, f in zip(onnx_input_names(spec), spec.features, strict=True)
    ]
    options = {id(pipeline): {"zipmap": False}} if spec.task == "classification" else None
    classifier = _double_trees(convert_sklearn_random_forest_classifier)
    regressor = _double_trees(convert_sklearn_random_forest_regressor_converter)
    converters = {SimpleImputer: _imputer, RandomForestClassifier: classifier,
                  HistGradientBoostingClassifier: classifier, RandomForestRegressor: regressor,
                  HistGradientBoostingRegressor: regressor}
    model = convert_sklearn(pipeline, initial_types=initial_types, options=options, target_opset=TARGET_OPSET,
                            custom_conversion_functions=converters)
    return bytes(model.SerializeToString())


def _imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer: in float64 on numbers (see the module's docstring); skl2onnx's own on strings."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.proto import onnx_proto

    imputer = operator.raw_operator
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        convert_sklearn_imputer(scope, operator, container)
        return
    missing = imputer.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise NotImplementedError(f"a numeric SimpleImputer replaces NaN only, not {missing!r}")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    features = concatenate_variables(scope, operator.inputs, container)
    values = scope.get_unique_variable_name("statistics")
    container.add_initializer(values, onnx_proto.TensorProto.DOUBLE, [1, statistics.size], statistics.tolist())
    is_nan = scope.get_unique_variable_name("is_nan")
    container.add_node("IsNaN", [features], [is_nan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [is_nan, values, features], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


def _double_trees(convert: Any) -> Any:
    """skl2onnx's tree-ensemble converter, writing opset 3 float64 `*_as_tensor` attributes."""

    @functools.wraps(convert)
    def converter(scope: Any, operator: Any, container: Any) -> None:
        from skl2onnx.common.data_types import DoubleTensorType

        doubles = {o.full_name for o in operator.outputs if isinstance(o.type, DoubleTensorType)}
        convert(scope, operator, _DoubleTreeContainer(container, doubles), op_version=3)

    return converter


class _DoubleTreeContainer:
    """skl2onnx's container, except that a tree-ensemble node keeps its float64 attributes as tensors, and
    its outputs declared float64 (float32 in that opset) are cast to float64."""

    def __init__(self, container: Any, double_outputs: set[str]):
        self._container = container
        self._double_outputs = double_outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "", op_version: int | None = None,
                 **attributes: Any) -> None:
        if op_type not in TREE_OPS:
            self._container.add_node(op_type, inputs, outputs, op_domain=op_domain, op_version=op_version,
                                     **attributes)
            return
        from onnx import TensorProto, numpy_helper

        for name in DOUBLE_ATTRIBUTES:
            if name in attributes:
                values = np.asarray(attributes.pop(name), dtype=np.float64).ravel()
                attributes[f"{name}_as_tensor"] = numpy_helper.from_array(values, name=f"{name}_as_tensor")
        for name, value in attributes.items():
            if isinstance(value, list) and value and all(isinstance(v, (bool, np.bool_, np.integer)) for v in value):
                attributes[name] = [int(v) for v in value]
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        produced = [f"{name}_float" if name in self._double_outputs else name for name in outputs]
        self._container.add_node(op_type, inputs, produced, op_domain=op_domain, op_version=op_version, **attributes)
        for float_name, name in zip(produced, outputs, strict=True):
            if float_name != name:
                self._container.add_node("Cast", [float_name], [name], to=TensorProto.DOUBLE,
                                         name=f"{attributes.get('name', op_type)}_{name}_cast")
