"""Virtual GPS terminals: motion, faults, protocols over real transports, scenarios, the runner."""
