"""SciPy-comparison benchmarks for flatvec: ``python -m benchmarks --help``.

Modules, one responsibility each:

``problems``     the embedded problems (data, Keras models, functions, initial weights)
``torch_mirror`` the same problems written in PyTorch (same data, same initial weights)
``peers``        how each method is run: flatvec, the SciPy bridge, tfp, torch
``measure``      timing, evaluation cost, memory sampling, the per-run record
``analysis``     derived numbers: time to target, overhead ratios
``report``       the Markdown table and ``results.json``
``plots``        convergence plots (matplotlib, optional)
``cli``          the command line
"""
