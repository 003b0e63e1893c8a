"""The booth: the patient session, its identity, records and UI."""
