"""The HTTP API: FastAPI app, bearer-token authentication, roles and customer scoping."""
