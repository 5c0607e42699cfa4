"""How the Vault store holds a usable token: a given `VAULT_TOKEN`, or an AppRole login.

Both renew the token once two thirds of its time to live have passed, so a long-running
service never meets an expired token. An AppRole token that can no longer be renewed (its
maximum TTL is near, or Vault refused the renewal) is replaced by a new login, and so is
one that Vault refuses outright; the secret id is read again from `VAULT_SECRET_ID_FILE`
at every login, so a rotated file is picked up without a restart. Every method here
blocks: the store calls them from its worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import hvac
import hvac.exceptions
import requests.exceptions

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError

logger = logging.getLogger("shared.secrets")

# Renew when less than this share of the token's time to live is left.
_RENEW_WHEN_LEFT = 1 / 3


class VaultAuth:
    """Keeps the hvac client's token valid (see the module docstring)."""

    def __init__(
        self,
        client: hvac.Client,
        settings: SecretsSettings,
        *,
        where: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._role_id = settings.vault_role_id or None
        self._role_id_file = settings.vault_role_id_file
        self._secret_id = settings.vault_secret_id
        self._secret_id_file = settings.vault_secret_id_file
        self._mount = settings.vault_approle_mount.strip("/") or "approle"
        self.approle = self._role_id is not None or self._role_id_file is not None
        if self.approle and self._secret_id is None and self._secret_id_file is None:
            raise SecretsConfigError(
                "VAULT_ROLE_ID needs VAULT_SECRET_ID or VAULT_SECRET_ID_FILE; neither is set"
            )
        if not self.approle and settings.vault_token is not None:
            client.token = settings.vault_token.get_secret_value()
        # Seconds from issue to expiry, and when (on `clock`) it was issued or renewed;
        # None until known, a ttl of 0 for a token that never expires (e.g. root).
        self._ttl: float | None = None
        self._since = 0.0
        self._renewable = False
        self.logins = 0
        self.renewals = 0

    @property
    def credential(self) -> str:
        """Name what we authenticate with, for messages."""
        return "the AppRole login (VAULT_ROLE_ID)" if self.approle else "VAULT_TOKEN"

    def ensure(self) -> None:
        """Make sure the client holds a token that is not about to expire."""
        with self._lock:
            if self.approle and (self._ttl is None or self._expired()):
                self._login()
                return
            if self._ttl is None:
                self._learn_token()
            if self._due():
                self._renew()

    def recover(self) -> bool:
        """After Vault refused our token: log in again (AppRole); True when worth a retry."""
        if not self.approle:
            return False
        with self._lock:
            self._login()
        return True

    def _expired(self) -> bool:
        return bool(self._ttl) and self._clock() >= self._since + (self._ttl or 0)

    def _due(self) -> bool:
        if not self._ttl or not self._renewable:
            return False
        return self._clock() >= self._since + self._ttl * (1 - _RENEW_WHEN_LEFT)

    def _learn_token(self) -> None:
        try:
            data = self._client.auth.token.lookup_self()["data"]
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            # The operation that follows fails with the precise reason.
            return
        self._remember(float(data.get("ttl") or 0), bool(data.get("renewable")))

    def _renew(self) -> None:
        try:
            auth = self._client.auth.token.renew_self()["auth"]
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            if self.approle:
                logger.info("Vault token renewal failed (%s); logging in again", type(exc).__name__)
                self._login()
            else:
                logger.warning(
                    "Vault at %s refused to renew VAULT_TOKEN (%s); it expires soon",
                    self._where,
                    type(exc).__name__,
                )
                self._renewable = False
            return
        ttl = float(auth.get("lease_duration") or 0)
        self.renewals += 1
        # Near its maximum TTL a renewal grants less than asked for: a fresh login then
        # keeps an AppRole service going; a plain token can only run out.
        if self.approle and self._ttl and ttl < self._ttl * _RENEW_WHEN_LEFT:
            self._login()
            return
        self._remember(ttl, bool(auth.get("renewable")))

    def _login(self) -> None:
        secret_id = self._read_secret_id()
        role_id = self._role_id or _read_file("VAULT_ROLE_ID_FILE", self._role_id_file)
        try:
            auth = self._client.auth.approle.login(
                role_id=role_id, secret_id=secret_id, mount_point=self._mount
            )["auth"]
        except (
            hvac.exceptions.InvalidRequest,
            hvac.exceptions.Forbidden,
            hvac.exceptions.Unauthorized,
        ):
            raise SecretsUnavailableError(
                f"Vault at {self._where} refused the AppRole login "
                "(check VAULT_ROLE_ID and the secret id)"
            ) from None
        except hvac.exceptions.InvalidPath:
            raise SecretsUnavailableError(
                f"Vault at {self._where} has no AppRole auth method at auth/{self._mount}"
            ) from None
        self.logins += 1
        self._remember(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))

    def _read_secret_id(self) -> str:
        if self._secret_id_file is None:
            if self._secret_id is None:  # refused in __init__ already
                raise SecretsConfigError("VAULT_ROLE_ID needs VAULT_SECRET_ID")
            return self._secret_id.get_secret_value()
        return _read_file("VAULT_SECRET_ID_FILE", self._secret_id_file)

    def _remember(self, ttl: float, renewable: bool) -> None:
        self._ttl = ttl
        self._renewable = renewable
        self._since = self._clock()


def _read_file(variable: str, file: Path | None) -> str:
    """Return the stripped text of a credentials file; a clear error naming the variable."""
    if file is None:
        raise SecretsConfigError(f"{variable} is not set")
    try:
        text = Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretsConfigError(f"{variable}={file} cannot be read ({exc.strerror})") from None
    if not text:
        raise SecretsConfigError(f"{variable}={file} is empty")
    return text
