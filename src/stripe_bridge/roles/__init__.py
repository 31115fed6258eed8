"""The long-running roles (worker, relay, scheduler, and `serve` with all of them in one
process): threads started and stopped around what the composition root built."""
