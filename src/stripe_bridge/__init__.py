"""stripe-bridge: keeps Veles and one Stripe account in step."""

__version__ = "0.7.0"
