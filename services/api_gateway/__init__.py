"""The API gateway: authentication, role-to-service RBAC and the proxy to downstream services."""
