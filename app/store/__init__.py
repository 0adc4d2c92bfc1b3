"""Content-addressed, write-once artifact store."""

from app.store.local import ArtifactStore, LocalStore, get_store

__all__ = ["ArtifactStore", "LocalStore", "get_store"]
