"""Browser sessions: the frontend that talks only to the gateway."""
