"""vnnews: ingestion pipeline for Vietnamese news (importable core, no Airflow import)."""
