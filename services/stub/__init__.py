"""A stand-in downstream service: verifies the gateway's assertion and echoes the caller."""
