"""What the user sees of a cell: the live reply, compare columns, the dry run, tables."""
