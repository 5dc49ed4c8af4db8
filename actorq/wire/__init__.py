"""The wire: every message, the protocol version, and the payload codec. Imports nothing above it."""
