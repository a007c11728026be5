"""The coordinator: a pure scheduler (jobs, leases, quorum, rewards) inside a SQLite + aiohttp shell."""
