"""Batch inference over whole collections (``clinloop predict``): :mod:`.predict`
orchestrates (resume, shards, worker processes), :mod:`.cases` segments and
writes one case."""
