"""The HTTP gateway: /health, /metrics, and (later) the REST API and dashboard."""
