"""Search strategies: ask for the next architecture, tell the result, save and restore state."""
