"""Reusable model parts: grouped layers, attention, transformer block."""
