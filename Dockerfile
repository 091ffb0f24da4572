# syntax=docker/dockerfile:1
#
# mpac-mcp-sidecar: the hosted, multi-session MPAC coordinator.
#
#   docker build -t mpac-mcp-sidecar .
#   docker run -d -p 8766:8766 -v mpac-data:/data \
#     -e MPAC_TOKEN_TABLE="$(cat tokens.json)" mpac-mcp-sidecar
#   docker run --rm mpac-mcp-sidecar token new --session my-project   # mint a token
#
# Node: 24 is the newest LTS line this project is tested on (CI runs 20, and
# the code is kept working on 22 and 24). Node 26 has been Active LTS since
# October 2026; once the suite runs on it, build with --build-arg NODE_VERSION=26.
# Build and runtime use the same base, so the better-sqlite3 addon compiled in
# the prod-deps stage matches the runtime's Node ABI and glibc.
ARG NODE_VERSION=24
ARG DEBIAN_RELEASE=trixie

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS base
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

# better-sqlite3 downloads a prebuilt addon when one matches, else compiles
# with node-gyp: python3, make and g++ are needed for that, in prod-deps only.
FROM base AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

# Build: all dependencies (TypeScript is a dev dependency), then tsc → dist/.
# Only the compiler runs here, so no install scripts: the native addon is
# compiled once, in prod-deps.
FROM base AS build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build

# Production dependencies only, compiled on the same base as the runtime.
FROM toolchain AS prod-deps
COPY package.json package-lock.json ./
# Our postinstall script runs during `npm ci` (it does nothing without tap).
COPY scripts/postinstall.mjs scripts/postinstall.mjs
RUN npm ci --omit=dev \
 && npm cache clean --force

FROM base AS runtime
# sqlite3: the shell for inspecting and repairing a quarantined session (docs/data.md);
# backups use `mpac-mcp-sidecar backup --to FILE`, which verifies the copy.
RUN apt-get update \
 && apt-get install -y --no-install-recommends sqlite3 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    MPAC_SIDECAR_HOST=0.0.0.0 \
    MPAC_SIDECAR_PORT=8766 \
    MPAC_DATA_DIR=/data
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json LICENSE ./
# `mpac-mcp-sidecar …` on the PATH (fly ssh console, docker exec).
RUN printf '#!/bin/sh\nexec node /app/dist/server/cli.js "$@"\n' > /usr/local/bin/mpac-mcp-sidecar \
 && chmod 755 /usr/local/bin/mpac-mcp-sidecar \
 && mkdir -p /data \
 && chown 1000:1000 /data \
 && chmod 700 /data
# The base image's unprivileged `node` user (uid 1000). Fly mounts volumes for
# the image's user; a Docker named volume copies /data's owner from the image;
# a bind mount must be owned by uid 1000 (chown 1000:1000 DIR on the host).
USER 1000:1000
VOLUME ["/data"]
EXPOSE 8766
STOPSIGNAL SIGTERM
# No curl in slim images: Node itself probes /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.MPAC_SIDECAR_PORT || '8766') + '/healthz', { signal: AbortSignal.timeout(4000) }).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The server handles SIGTERM itself (closes every client with 1012, flushes the
# store, exits); run with `docker run --init` if you want an init as PID 1.
ENTRYPOINT ["node", "/app/dist/server/cli.js"]
CMD ["--multi-session"]
