"""CLI command groups beyond the process roles (each registers its own subcommands)."""
