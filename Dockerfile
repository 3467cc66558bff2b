# An image for hosts other than Heroku-style platforms: the same processes as the Procfile.
#   docker build -t command-gateway .
#   docker run -e REDIS_URL=... -e DATABASE_URL=... -e JWT_SECRET=... -e COLLECTIONS=... -p 5000:5000 command-gateway
#   docker run ... command-gateway python -m workers          # the worker
#   docker run ... command-gateway flask --app app setup      # the release step, before each release
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PORT=5000
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN useradd --system --no-create-home gateway
USER gateway
EXPOSE 5000
CMD ["gunicorn", "wsgi:app"]
