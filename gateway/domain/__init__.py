"""The project's own types, no I/O: what providers hand the services and services hand
providers, whatever the provider (httpx's `Response` whatever the transport)."""
