"""FHIR over HTTP: routing, negotiation, headers, Bundles and operations. No SQL."""
