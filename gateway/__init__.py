"""The gateway: transports that move terminal bytes, protocol sessions, and the ingest pipeline."""
