"""Settlement under a regional policy: policy files, the settle engine, impact comparison."""
