"""Plain record CRUD: the FHIR interactions as a service over store/, used by the API,
the bundle processor and the loader alike."""
