"""flatvec: full-vector optimization for TensorFlow and Keras.

Keep Keras-using code out of this file: once ``flatvec.keras`` is imported, the name ``keras``
in this namespace is that submodule, not the Keras package.
"""

from flatvec.objective import Objective, ValueAndGradient
from flatvec.space import FlatParamSpace, VariableSlot

__version__ = "0.1.0"

__all__ = ["FlatParamSpace", "Objective", "ValueAndGradient", "VariableSlot", "__version__"]
