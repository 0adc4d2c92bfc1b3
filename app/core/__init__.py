"""Numerics only: spectra checks, PLS, Kennard-Stone, calibration transfer, metrics, simulator.

Nothing here imports web, database or other ``app`` packages, so the core is usable from a
notebook with no server.
"""
