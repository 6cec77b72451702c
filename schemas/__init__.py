"""Every warehouse table declared once.

Arrow schemas, DuckDB DDL, expectation suites and the data dictionary are all generated from the
declarations in :mod:`schemas.tables`. Nothing in this package imports the rest of osteolake.
"""

from schemas.core import PHI, Column, Layer, Table
from schemas.registry import TABLES, get_table

__all__ = ["PHI", "Column", "Layer", "Table", "TABLES", "get_table"]
