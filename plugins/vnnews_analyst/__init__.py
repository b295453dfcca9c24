"""The vnnews analyst pages: a FastAPI app the Airflow plugin mounts (vnnews_plugin.py)."""
