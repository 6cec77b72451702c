"""Table declarations by domain; each module exports ``TABLES: list[Table]``."""
