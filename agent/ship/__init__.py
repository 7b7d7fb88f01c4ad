"""Shipping to S3-compatible object storage: the outbox drained, every byte verified by the server.

Data objects are content-addressed (``sha256/<hex>``); each session's documents (crate, preview,
sidecars) follow under ``sessions/<agent>/<root>/<session>/`` once all its data objects are stored.
The ledger's outbox is the only state: a restart continues where the last run stopped, multipart
uploads included.
"""
