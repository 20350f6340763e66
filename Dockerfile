# framewise: one image for the API and every worker (the command picks the role).
#   docker build -t framewise .
#   docker run --rm framewise label /clips/a.mp4        (inline, no Redis)
#   docker compose up                                    (queue mode, see docker-compose.yml)

FROM node:20-bookworm-slim AS build
WORKDIR /app
# onnxruntime-node's install script only downloads CUDA binaries (the CPU library ships in the
# package); `skip` keeps the build offline-safe. For the CUDA execution provider build with
#   --build-arg ONNXRUNTIME_NODE_INSTALL=cuda12   (needs internet at build time)
ARG ONNXRUNTIME_NODE_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json vitest.config.ts ./
COPY src ./src
COPY workers ./workers
COPY scripts ./scripts
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund --loglevel=error

FROM node:20-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends ffmpeg ca-certificates tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY pretrained ./pretrained
COPY web ./web
COPY schemas ./schemas
# the database schema's migrations, applied at start-up by the API and the classify/ingest workers
COPY db ./db
# feature store + converted models (cache) and uploads/artifacts (data): volumes shared by the services
RUN mkdir -p /var/lib/framewise/cache /var/lib/framewise/data && chown -R node:node /var/lib/framewise
USER node
VOLUME ["/var/lib/framewise"]
EXPOSE 8080
# tini forwards SIGTERM so `docker stop` lets workers finish their current job (worker.close())
ENTRYPOINT ["tini", "--", "node", "dist/src/cli/bin.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
