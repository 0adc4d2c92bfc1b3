"""softsensor-registry: a GxP registry for spectroscopic soft-sensor models."""

__version__ = "0.1.0"
