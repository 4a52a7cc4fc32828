"""Classical solvers microscopists already trust: one module per task."""
