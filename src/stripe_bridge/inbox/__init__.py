"""The durable inbox, read top-down: `signatures` and `parse` (the doors' checks), `store`
(rows in the caller's transaction), `batch` (a job's events applied together) falling back to
`apply` (one event at a time), and `sweeper` (events whose job was lost)."""
