"""Pure clinical knowledge: NHS number, NEWS2, vital signs. No I/O."""
