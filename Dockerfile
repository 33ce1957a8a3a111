FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORTAL_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY catalog_portal catalog_portal
COPY teams teams
COPY brokers brokers
COPY instances instances
COPY devtools devtools
COPY templates templates
COPY static static
RUN pip install --no-cache-dir -e . && mkdir -p /data
EXPOSE 8000
CMD ["gunicorn", "catalog_portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
