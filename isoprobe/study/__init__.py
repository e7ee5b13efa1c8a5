"""Studies: a recipe (TOML) run as resumable jobs, collected into tables and a report."""
