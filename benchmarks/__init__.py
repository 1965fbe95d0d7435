"""SciPy-comparison benchmarks for flatvec: ``python -m benchmarks --help``.

(``objective_timing``, ``keras_epoch_timing`` and ``sinc_lm`` are separate timing scripts, not
part of it.)

Modules, one responsibility each:

``problems``     the embedded problems (data, Keras models, functions, initial weights)
``torch_mirror`` the same problems written in PyTorch (same data, same initial weights)
``peers``        how each method is run: flatvec, the SciPy bridge, tfp, torch
``residual_forms``       r(x) of the least-squares problems, ½‖r‖² equal to their loss
``least_squares_peers``  the least-squares methods: flatvec lm, SciPy least_squares, JᵀJ
``explicit_lm``  the explicit-JᵀJ Levenberg-Marquardt of the Keras LM package
``measure``      timing, evaluation cost, memory sampling, the per-run record
``runner``       the problem x method grid: cold call, round-robin timed repeats
``analysis``     derived numbers: time to target, overhead ratios
``acceptance``   the project's acceptance targets, checked on one run's records
``report``       the Markdown table and ``results.json``
``plots``        convergence plots (matplotlib, optional)
``cli``          the command line
"""
