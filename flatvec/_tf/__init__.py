"""Every contact of flatvec with TensorFlow's or Keras' private API, behind one switch.

Each module here uses something TensorFlow or Keras does not promise to keep, says what it buys
(measured on this project's 2-core machine, TF 2.21 / Keras 3.15, 2026-12-06) and has a public
fallback that runs when :func:`enabled` is false. With all of them off, the benchmark's warm
runs take 0.55/1.19/0.24/0.27 s (digits MLP f32/f64, PINN, Rosenbrock n = 10^5) against
0.56/1.17/0.24/0.21 s, first calls 1.55/2.28/1.14/1.12 s against 1.50/2.19/1.06/0.88 s, with
the same iterations and evaluations (measured before tiered execution, when every first call
compiled its loop; what each buys now, in short runs too, is in the table):

==========================  ==============================================  ====================
module                      private contact and what it buys                fallback
==========================  ==============================================  ====================
``graph_reuse``             ``ConcreteFunction._call_flat`` with chosen     trace the loop again
                            captures: a fresh model of an architecture
                            already optimized runs the earlier loop's
                            graphs. Pays where runs compile: a seed sweep
                            of 300-iteration L-BFGS runs (digits MLP f32,
                            reseeded models in one process) 1.27 s a
                            model against 1.58-1.67 s. Short runs on the
                            host compile nothing: there it changes
                            nothing (first@40 and fresh@40, five
                            problems, within noise)
``call_options``            ``tensorflow.python.eager.context`` call        TensorFlow's default
                            options: a lean Grappler configuration for      graph optimization
                            flatvec's own calls, the objective's first
                            call included (PINN: 43 ms against 60 ms).
                            40-iteration runs on the host: 0.395 against
                            0.421 s (digits MLP f32, first call), 0.161
                            against 0.175 s (PINN, fresh model), 8-30 ms
                            a call on five problems
``inplace``                 ``tf.raw_ops.InplaceUpdate``, whose in-place    a scatter (a copy of
                            semantics TensorFlow does not document: one     the [m, n] buffer)
                            L-BFGS pair row written into its buffer
                            (Rosenbrock n = 10^5: 0.207 s a run against
                            0.262 s; the digits MLP and PINN unchanged)
``keras_hook``              Keras' ``TFOptimizer._distributed_tf_update_    Keras' public
                            step`` (and ``keras.src`` to check it):         ``update_step``, one
                            ``VectorOptimizer`` applies its rule once to    variable at a time,
                            the whole vector, under strategies too          gathered into one
                                                                            vector (no
                                                                            strategies)
``variables``               ``KerasVariable._value``: the ``tf.Variable``   ``.value``, the
                            itself, also inside a mixed-precision           same outside
                            autocast scope (where ``.value`` is a cast      autocast scopes
                            copy): identity, tapes and fast reads           (where flatvec
                                                                            reads it)
==========================  ==============================================  ====================

:func:`enabled` is the switch: ``FLATVEC_PRIVATE_TF=0`` turns every contact off, and so does a
TensorFlow or Keras outside the tested versions (:mod:`flatvec.versions`), where flatvec warns
and runs on the fallbacks. The test suite passes with the switch off (``make test-public``).
"""

from __future__ import annotations

import functools
import os

__all__ = ["SWITCH", "enabled"]

SWITCH = "FLATVEC_PRIVATE_TF"


@functools.lru_cache(maxsize=1)
def _tested() -> bool:
    from flatvec.versions import is_tested

    return is_tested()  # versions do not change in a process; parsing them costs 40 us a call


def enabled() -> bool:
    """Whether flatvec may use TensorFlow's and Keras' private API (see the module docstring):
    ``FLATVEC_PRIVATE_TF`` is not ``0`` and the installed versions are tested ones."""
    return os.environ.get(SWITCH, "1") != "0" and _tested()
