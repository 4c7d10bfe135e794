"""The codes the virtual ward writes and looks for: the NEWS2 score in the shape UK Core
gives early warning scores, the marks on readings, and the kinds of Task it raises."""

from __future__ import annotations

from bevan.clinical.news2 import Band, Parameter

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BEVAN = "https://bevan.nhs.uk/fhir"

NEWS2_CODE = "1104051000000101"
NEWS2_CONCEPT = {
    "coding": [
        {
            "system": SNOMED,
            "code": NEWS2_CODE,
            "display": "Royal College of Physicians National Early Warning Score 2 (NEWS2)",
        }
    ]
}
NEWS2_TOKEN = f"{SNOMED}|{NEWS2_CODE}"

# One component per sub-score (UK Core early warning score components).
SUB_SCORE_CODES: dict[Parameter, tuple[str, str]] = {
    Parameter.RESPIRATION_RATE: ("1104301000000104", "NEWS2 respiration rate score"),
    Parameter.AIR_OR_OXYGEN: ("1104331000000105", "NEWS2 air or oxygen score"),
    Parameter.SYSTOLIC: ("1104341000000101", "NEWS2 systolic blood pressure score"),
    Parameter.PULSE: ("1104351000000103", "NEWS2 pulse rate score"),
    Parameter.CONSCIOUSNESS: ("1104361000000100", "NEWS2 consciousness score"),
    Parameter.TEMPERATURE: ("1104371000000107", "NEWS2 temperature score"),
}
SPO2_SCALE_CODES: dict[int, tuple[str, str]] = {
    1: ("1104311000000102", "NEWS2 SpO2 scale 1 score"),
    2: ("1104321000000108", "NEWS2 SpO2 scale 2 score"),
}

BAND_SYSTEM = f"{BEVAN}/CodeSystem/news2-clinical-risk"
BAND_DISPLAY: dict[Band, str] = {
    Band.ZERO: "Zero (NEWS2 total 0)",
    Band.LOW: "Low clinical risk (NEWS2 1-4)",
    Band.LOW_MEDIUM: "Low-medium clinical risk (a 3 in a single parameter)",
    Band.MEDIUM: "Medium clinical risk (NEWS2 5-6)",
    Band.HIGH: "High clinical risk (NEWS2 7 or more)",
}
# How long after its effective time a set reached the record, on its score.
ARRIVAL_LAG_URL = f"{BEVAN}/StructureDefinition/arrival-lag"

# A reading stored but never scored: searchable with
# `Observation?_tag=https://bevan.nhs.uk/fhir/CodeSystem/reading-quality|implausible`.
READING_QUALITY = f"{BEVAN}/CodeSystem/reading-quality"
IMPLAUSIBLE_TAG = {
    "system": READING_QUALITY,
    "code": "implausible",
    "display": "Implausible reading: stored, never scored",
}

# The Tasks the virtual ward raises, told apart by their code.
TASK_CODES = f"{BEVAN}/CodeSystem/virtual-ward-task"
ESCALATION = "news2-escalation"
OVERDUE = "overdue-readings"
TASK_DISPLAY = {
    ESCALATION: "Respond to a raised NEWS2 score",
    OVERDUE: "Vital-sign readings overdue",
}
# Task.priority by band (FHIR request-priority).
PRIORITY: dict[Band, str] = {Band.LOW_MEDIUM: "urgent", Band.MEDIUM: "asap", Band.HIGH: "stat"}
PRIORITY_RANK = {"routine": 0, "urgent": 1, "asap": 2, "stat": 3}

# The named system principal the virtual ward's own writes act as.
SYSTEM_PRINCIPAL = "bevan-virtual-ward"
SOURCE = f"{BEVAN}/Device/{SYSTEM_PRINCIPAL}"
