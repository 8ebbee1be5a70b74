# syntax=docker/dockerfile:1
# One image, two entrypoints: `operator` (the controller) and `relay` (the SMTP
# relay the operator runs as a StatefulSet). Built in three stages:
#   deps   production node_modules only (npm ci --omit=dev)
#   build  the TypeScript compiled into dist/ (needs the dev dependencies)
#   final  distroless Node.js 22, no shell, no package manager, numeric
#          non-root user 65532; nothing is written outside mounted volumes, so
#          it runs with readOnlyRootFilesystem: true.
#
#   docker build -t ghcr.io/mail-continuity/mail-continuity-operator:0.1.0 .
#   docker run --rm IMAGE operator --help
#   docker run --rm IMAGE relay --config /etc/mail-continuity/relay.yaml
#
# The base images are build arguments so that a machine without a registry can
# build this same file from local stand-ins (scripts/build-image.sh, buildah).
# NODE_EXTRA_CA_CERTS, when given, is seen by npm in the build stages only.

ARG BUILD_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs22-debian12:nonroot

FROM ${BUILD_IMAGE} AS deps
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts

FROM ${BUILD_IMAGE} AS build
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mail-continuity-operator" \
      org.opencontainers.image.description="Kubernetes operator and SMTP relay that keep inbound mail flowing to Gmail while Microsoft Exchange is down" \
      org.opencontainers.image.source="https://github.com/mail-continuity/mail-continuity-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="mail-continuity"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist/src ./dist/src
COPY --chown=0:0 package.json ./
# Files owned by root and not writable by the process; the process runs as 65532.
USER 65532:65532
# SMTP (relay) and HTTP: /metrics, /healthz, /readyz (operator and relay).
EXPOSE 2525 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]
CMD ["--help"]
