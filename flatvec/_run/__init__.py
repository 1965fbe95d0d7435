"""Internals of a run of :func:`flatvec.minimize`: the compiled loop and its eager tier, the
stopping tests, the typed record of an iteration, the problem a call describes, reporting to
callbacks and progress, checkpointed runs and the checks of a call's keywords. Nothing here is
public API."""
