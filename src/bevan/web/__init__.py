"""The clinician and patient web app: server-rendered pages (Starlette, Jinja2, the
NHS.UK frontend, htmx) over the same services and access checks as the FHIR API."""
