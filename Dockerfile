# One image for every Python service of durable-chat; docker-compose.yml picks the command.

# The web page: TypeScript stubs and one bundle (as `make web`), served by the gateway.
FROM node:20.19-bookworm-slim AS web
WORKDIR /build
COPY package.json buf.gen.yaml buf.yaml ./
RUN npm install --no-audit --no-fund --no-package-lock
COPY protos/ protos/
COPY web/src/ web/src/
RUN PATH=/build/node_modules/.bin:$PATH buf generate \
    && node_modules/.bin/esbuild web/src/main.ts --bundle --format=esm --minify \
        --target=es2022 --outfile=web/static/app.js

FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY protos/ protos/
RUN python -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. \
        protos/durablechat/v1/*.proto \
    && touch durablechat/__init__.py durablechat/v1/__init__.py

COPY common/ common/
COPY session_service/ session_service/
COPY ai_service/ ai_service/
COPY gateway/ gateway/
COPY admin/ admin/
COPY deploy/__init__.py deploy/healthcheck.py deploy/make_secret.py deploy/
COPY web/static/index.html web/static/app.css web/static/
COPY --from=web /build/web/static/app.js web/static/

RUN useradd --create-home --uid 10001 durablechat && mkdir /auth && chown durablechat /auth
USER durablechat

ENV BIND_HOST=0.0.0.0
EXPOSE 8080 8081 8090 50051 50052 9101
CMD ["python", "-m", "gateway"]
