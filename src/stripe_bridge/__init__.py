"""stripe-bridge: keeps Veles and one Stripe account in step."""

__version__ = "0.9.0.dev0"
