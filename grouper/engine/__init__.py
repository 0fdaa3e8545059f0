"""The engine: checked AST → execution plan (compile) → result arrays (kernel) → result frames (run)."""
