"""Executors run trials: in the coordinating process, in worker processes (one per trial slot), or on Ray."""
