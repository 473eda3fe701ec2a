FROM python:3.12-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY workers ./workers
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && useradd --create-home syncbridge
USER syncbridge
EXPOSE 8000
CMD ["syncbridge", "web", "--host", "0.0.0.0"]
