"""Ingesting a batch: hashing, curation (rules, validation, enrichment, drift), the sidecar and crate
documents, and ``process_batch``, where the stages meet."""
