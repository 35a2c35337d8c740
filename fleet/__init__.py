"""The fleet registry: customers, vehicles, drivers, terminals, SIMs, installations and swaps."""
