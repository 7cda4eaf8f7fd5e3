"""Key Vault: every `@Microsoft.KeyVault(...)` reference resolved, and the vault's secrets readable."""

from __future__ import annotations

from ..keyvault import unresolved_references
from .base import CheckResult, Environment, failed, passed, skipped

NAME = "keyvault"


class KeyVaultCheck:
    name = NAME
    timeout_fix = "check KEY_VAULT_URL and that the app's identity has Key Vault Secrets User on the vault"

    async def run(self, env: Environment) -> CheckResult:

        # env.settings already has the vault's secrets applied (load_environment)
        names = unresolved_references(env.settings)
        if names:
            return failed(
                NAME,
                f"unresolved Key Vault references in {', '.join(names)}",
                "grant the app's identity Key Vault Secrets User on the vault, check keyVaultReferenceIdentity and that each referenced secret exists",
            )
        if not env.settings.key_vault_url:
            return skipped(NAME, "KEY_VAULT_URL unset and no Key Vault references in the settings")
        return passed(NAME, f"{env.settings.key_vault_url}: secrets loaded, no unresolved references")
