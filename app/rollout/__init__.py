"""Moving the editor from Appetize to this preview system: which backend a project uses, and
the migration of projects' Appetize settings."""
