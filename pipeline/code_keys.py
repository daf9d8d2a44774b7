"""Each component's cache key holds the project code it runs and the environment (see pipeline/fingerprints.py).

TFX keys a component's cache on its parameters, its input artifacts and its
executor's class name. key_by_code adds a parameter, CODE_PROPERTY, holding
the hash of the project modules the component runs and of the environment, so
that an edit to that code, or an upgraded package, re-runs the component (and
everything after it, through its new outputs) and nothing else.
"""
from __future__ import annotations

import hashlib
import json

from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.dsl.components.base.base_node import BaseNode
from tfx.types import standard_component_specs

from pipeline.fingerprints import CodeIndex

# The parameter that keys each component's cache on the project code it runs and on the environment.
CODE_PROPERTY = "code"
# Parameters that name a function by module path ("models.preprocessing.preprocessing_fn").
FUNCTION_PROPERTIES = (standard_component_specs.PREPROCESSING_FN_KEY, standard_component_specs.RUN_FN_KEY,
                       standard_component_specs.STATS_OPTIONS_UPDATER_FN_KEY, standard_component_specs.TUNER_FN_KEY,
                       "trainer_fn")


def component_modules(component: BaseComponent) -> list[str]:
    """The modules a component runs, of which key_by_code keys it on the project's: its executor's, the
    functions it is given by module path, the metrics its eval_config loads by module, and the in-process
    patches local_runner installs: pipeline.local_beam into every Beam executor, pipeline.local_tft into
    tf.Transform's tracing of a preprocessing_fn."""
    spec = component.executor_spec
    modules = [spec.executor_class.__module__] if hasattr(spec, "executor_class") else []
    properties = component.exec_properties
    for key in FUNCTION_PROPERTIES:
        if isinstance(properties.get(key), str):
            modules.append(properties[key].rsplit(".", 1)[0])
    if isinstance(properties.get(standard_component_specs.MODULE_PATH_KEY), str):
        modules.append(properties[standard_component_specs.MODULE_PATH_KEY].split("@", 1)[0])
    if isinstance(properties.get(standard_component_specs.EVAL_CONFIG_KEY), str):
        specs = json.loads(properties[standard_component_specs.EVAL_CONFIG_KEY]).get("metrics_specs", [])
        modules += [metric["module"] for metrics_spec in specs
                    for metric in metrics_spec.get("metrics", []) if metric.get("module")]
    if isinstance(spec, executor_spec.BeamExecutorSpec):
        modules.append("pipeline.local_beam")
    if isinstance(properties.get(standard_component_specs.PREPROCESSING_FN_KEY), str):
        modules.append("pipeline.local_tft")
    return modules


def key_by_code(components: list[BaseNode], index: CodeIndex, environment: str) -> None:
    """Sets each component's CODE_PROPERTY to the hash of the project code it runs (index) and the environment.

    Nodes that run no executor (the Resolver) have no cache to key.
    """
    for component in components:
        if isinstance(component, BaseComponent):
            code = index.digest(component_modules(component))
            component.exec_properties[CODE_PROPERTY] = hashlib.sha256(f"{code} {environment}".encode()).hexdigest()[:16]
