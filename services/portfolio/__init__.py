"""The portfolio service: the identity store (users, passwords, API keys) and its HTTP API."""
