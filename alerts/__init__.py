"""Terminal health, fault rules, alerts, repair tickets and notifications."""
