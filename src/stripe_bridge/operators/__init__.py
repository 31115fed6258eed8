"""What operators see and do, shared by the admin API, the CLI and `status`: `views` (records as
JSON), `status`, `deadletters`, `maintenance` (recover, prune), `gauges` (the /metrics counts)."""
