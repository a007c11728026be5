"""The depin command line."""
