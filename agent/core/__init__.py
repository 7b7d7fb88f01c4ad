"""The core: values that flow through the agent, its failures, its configuration and retry policy.

Pure: nothing here reads or writes a file (but the configuration file), opens the ledger or awaits.
Every other layer builds on it; it imports nothing of the agent's above it.
"""
