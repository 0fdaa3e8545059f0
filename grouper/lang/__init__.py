"""The scheme language: text → AST (parse) → checked AST (check), and AST → text (printer)."""
