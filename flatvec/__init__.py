"""flatvec: full-vector optimization for TensorFlow and Keras.

Keep Keras-using code out of this file: once ``flatvec.keras`` is imported, the name ``keras``
in this namespace is that submodule, not the Keras package.
"""

from flatvec.versions import check_versions

check_versions()  # before anything relies on a private TensorFlow/Keras hook

from flatvec._objective.closure_cache import clear_closure_cache
from flatvec._objective.model_cache import clear_objective_cache
from flatvec.checkpoint import StateCheckpoint
from flatvec.driver import minimize
from flatvec.objective import Objective, ValueAndGradient
from flatvec.oracle import Oracle
from flatvec.protocol import (
    Algorithm,
    UpdateRule,
    available_algorithms,
    get_algorithm,
    register_algorithm,
)
from flatvec.residual_closure import ResidualClosureObjective
from flatvec.residuals import ResidualObjective
from flatvec.result import OptimizeResult
from flatvec.space import FlatParamSpace, VariableSlot
from flatvec.status import Status, StopReason

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "FlatParamSpace",
    "Objective",
    "OptimizeResult",
    "Oracle",
    "ResidualClosureObjective",
    "ResidualObjective",
    "StateCheckpoint",
    "Status",
    "StopReason",
    "UpdateRule",
    "ValueAndGradient",
    "VariableSlot",
    "__version__",
    "available_algorithms",
    "clear_closure_cache",
    "clear_objective_cache",
    "get_algorithm",
    "minimize",
    "register_algorithm",
]
