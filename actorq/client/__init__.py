"""The client library: Client (sync), AsyncClient, and the session they share."""
