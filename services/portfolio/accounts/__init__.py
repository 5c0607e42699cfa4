"""The identity store: users, passwords, the login throttle, API keys, and the internal
identity API the gateway calls."""
