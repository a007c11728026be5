"""The worker daemon: leases signed tasks, runs numba kernels, journals and reports signed results."""
