"""``osteolake export-omop``: placeholder replaced below."""
