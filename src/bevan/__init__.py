"""Bevan: an open, publicly owned electronic patient record for the NHS, on FHIR R4."""

__version__ = "0.1.0"
