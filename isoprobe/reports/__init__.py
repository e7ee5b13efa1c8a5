"""Tables, figures and report folders. Plotting libraries are imported here only (STYLE habit 8)."""
