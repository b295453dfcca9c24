# The image every Airflow service of docker-compose.yml runs: Airflow 3.3.2 with the
# CeleryExecutor, the vnnews pipeline, its DAGs and its plugin. Every Python package
# is pinned by constraints.txt (the resolved environment the tests run in).
#
#   docker build -t vnnews-airflow .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/vnnews/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/vnnews/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    VNNEWS_HOME=/opt/airflow/vnnews

# Airflow's customary uid; group 0 so the image also runs under an arbitrary uid.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home airflow

WORKDIR /opt/vnnews

# Dependencies in their own layer (they change less often than the code). The
# install is editable because pipeline/ finds sql/ next to itself.
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline/__init__.py pipeline/__init__.py
RUN pip install "pip==25.3" \
 && pip install -c constraints.txt -e ".[airflow,celery]"

COPY pipeline pipeline
COPY sql sql
COPY dags dags
COPY plugins plugins

# Fail the build, not the first task, if the NLP models or the DAGs do not load.
RUN python -c "from pipeline import nlp; nlp.models()" \
 && python -c "import sys; sys.path.insert(0, 'dags'); import vnnews_crawl, vnnews_process, vnnews_cluster, vnnews_maintenance" \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth \
 && chown -R airflow:0 /opt/airflow && chmod -R g+rwX /opt/airflow

USER 50000
EXPOSE 8080
ENTRYPOINT ["airflow"]
CMD ["version"]
