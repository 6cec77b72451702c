"""Pure units of work by domain. Tasks return Arrow/Polars frames; they never open the warehouse."""
