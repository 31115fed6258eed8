"""HTTP entry points: the Starlette app factory and its routes."""
