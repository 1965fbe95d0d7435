"""Built-in whole-vector methods, installed as ``flatvec.algorithms``."""
