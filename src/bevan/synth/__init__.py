"""A deterministic synthetic NHS population as FHIR R4 resources (UK Core flavoured).

Patient i of a seed is the same however many patients are generated: a registered GP
practice, long-term conditions with medicines and results that follow them, consultations,
allergies, vaccinations, some national data opt-outs, and a virtual ward cohort with
remote NEWS2 monitoring. NHS numbers are in the never-issued test range (999...).
"""

from bevan.synth.bundles import generate_patients, shared_resources, write_population

__all__ = ["generate_patients", "shared_resources", "write_population"]
