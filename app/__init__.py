"""The composition root: the ``gpsfleet`` command, and the wiring of gateway, API and alerts."""
