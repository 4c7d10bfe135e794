"""The virtual ward: readings scored on arrival, escalation, overdue readings, and
notifications to subscribers (see ../shared/ARCHITECTURE.md)."""
