"""The filesystem, touched safely: paths below a root without following links, filesystem types,
atomic and durable writes of the agent's own documents, and the one-agent-per-state-directory lock."""
