"""The intervention engine: attention-pathway masking and replacement, activation patching (DESIGN §4)."""
