"""What inbound processing needs to know of the Stripe connection: signing secrets and mode.

Until an API key is connected through the bridge, both come from the settings
(`STRIPE_WEBHOOK_SECRET`, `STRIPE_API_KEY`'s prefix or `STRIPE_MODE`)."""

from __future__ import annotations

from stripe_bridge.settings import Settings


class InboundConfig:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def webhook_secrets(self) -> tuple[str, ...]:
        return self._settings.stripe_webhook_secrets[:2]

    def mode(self) -> str:
        return self._settings.inbound_mode
