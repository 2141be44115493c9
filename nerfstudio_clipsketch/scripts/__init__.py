"""Command-line tools for trained clipsketch runs (console scripts declared in pyproject.toml)."""
