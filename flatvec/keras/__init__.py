"""Keras 3 integration (see flatvec.keras.optimizer)."""
