"""Project tools run by make targets (not part of the app)."""
