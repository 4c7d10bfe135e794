"""The FHIR R4 standard as pure knowledge: types, validation, references, outcomes. No I/O."""
