FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir -c constraints.txt .
ENV REGISTRY_STORE_ROOT=/data/models_store
EXPOSE 8000
# Migrations are a deployment step, not part of app start-up: see the `migrate` service.
CMD ["ssreg", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
