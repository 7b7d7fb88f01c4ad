"""The hub: the facility's catalogue of every agent's datasets, fed by their events.

A second program beside the service (``fair-agent hub``), run centrally: a durable JetStream pull
consumer takes the agents' events in batches, writes each batch to PostgreSQL in one transaction of
idempotent upserts, acknowledges after the commit and sends each agent its receipts. Several hub
processes may share the consumer.
"""
