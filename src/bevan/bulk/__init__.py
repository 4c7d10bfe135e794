"""Bulk data: asynchronous $export to NDJSON files and $import of NDJSON, run as jobs in
the background whose state any worker can report (FHIR Bulk Data Access 2.0)."""
