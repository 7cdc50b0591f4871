"""The database and the artifact files; decides nothing."""

from adaptloop.store.artifacts import ArtifactStore
from adaptloop.store.db import Store

__all__ = ["ArtifactStore", "Store"]
