"""Pydantic v2 API contract, one module per area (XCreate / XRead)."""
