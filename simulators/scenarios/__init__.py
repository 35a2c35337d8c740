"""Scenario files shipped with gpsfleet (package data): mixed-fleet, load-test, fault-drill."""
