"""The one place that speaks SQL about records: tables, versions, index rows, changes."""
