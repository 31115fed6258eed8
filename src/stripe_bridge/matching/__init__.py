"""Matching Stripe records to Veles records: `rules` (pure decisions), `linking` (the rules
applied in a handler's transaction), `review` (the operator's decisions)."""
