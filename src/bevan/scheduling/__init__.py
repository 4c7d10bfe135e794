"""Diaries, bookings and waiting lists on the standard FHIR resources.

A practice's own system, the NHS App and Bevan's web app see one diary because it is
made of ordinary Schedule, Slot and Appointment resources. What makes a booking safe
(a slot is taken once, a cancelled slot is freed and offered to the next person waiting)
is a write rule (`booking.BookingRule`), so it holds whichever door the write comes by.
"""
