"""The operator's command line (`stripe-bridge …`): `main` parses and dispatches; one module per
group of commands."""
