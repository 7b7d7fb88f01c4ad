"""fair-agent: a FAIR drop-folder agent for research labs.

It notices new instrument and ELN exports, waits until a session is complete, hashes every file
exactly once and writes FAIR metadata next to the data: a ``<file>.fair.json`` sidecar per file
and an RO-Crate 1.2 ``ro-crate-metadata.json`` per session folder.
"""

__version__ = "0.1.0"
AGENT_NAME = "fair-agent"
#: The agent's entity in every crate it writes; how it recognises its own crates.
AGENT_ENTITY_ID = "#fair-agent"
#: The project's ad-hoc RO-Crate term namespace doubles as its identifier in crates.
AGENT_URL = "https://w3id.org/ro/terms/fair-agent"

__all__ = ["AGENT_ENTITY_ID", "AGENT_NAME", "AGENT_URL", "__version__"]
