"""arq workers: thin jobs that call the pool manager and the data layer."""
