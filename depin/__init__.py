"""depin: the shared core (protocol, codec, crypto, ledger, kernels) and the CLI."""

__version__ = "0.1.0"
