/**
 * Builds the single-page app into dist/, which the server serves at `/`.
 * In development the API and the socket are proxied to a server on :3000.
 *
 * The build reports what the first page load costs — the entry chunk, the
 * chunks it imports statically and its CSS, gzipped — and fails when that
 * passes INITIAL_ROUTE_LIMIT_KB. The diff viewer and the highlighter are
 * loaded only when needed, so they are not part of it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

const server = process.env.UMBRA_SERVER_URL ?? "http://127.0.0.1:3000";
/** Largest gzipped size of the initial route, in KB. */
const INITIAL_ROUTE_LIMIT_KB = 250;

function initialRouteSize(): Plugin {
  return {
    name: "umbra-initial-route-size",
    apply: "build",
    // After writing, so the sizes are of the files as served (minified), read back from disk.
    writeBundle(options, bundle) {
      const entry = Object.values(bundle).find((item) => item.type === "chunk" && item.isEntry);
      if (!entry || entry.type !== "chunk") return;
      const files = new Set<string>();
      const visit = (name: string) => {
        if (files.has(name)) return;
        files.add(name);
        const item = bundle[name];
        if (item?.type === "chunk") {
          for (const imported of item.imports) visit(imported);
          for (const css of item.viteMetadata?.importedCss ?? []) files.add(css);
        }
      };
      visit(entry.fileName);
      let total = 0;
      const parts: string[] = [];
      for (const name of files) {
        if (!bundle[name]) continue;
        const size = gzipSync(readFileSync(join(options.dir ?? "dist", name))).length;
        total += size;
        parts.push(`${name} ${(size / 1024).toFixed(1)} KB`);
      }
      const kb = total / 1024;
      this.info(`initial route: ${kb.toFixed(1)} KB gzipped (limit ${INITIAL_ROUTE_LIMIT_KB} KB): ${parts.join(", ")}`);
      if (kb > INITIAL_ROUTE_LIMIT_KB) {
        this.error(`the initial route is ${kb.toFixed(1)} KB gzipped, over the ${INITIAL_ROUTE_LIMIT_KB} KB limit`);
      }
    },
  };
}

export default defineConfig({
  plugins: [react(), initialRouteSize()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1200 },
  server: {
    proxy: {
      "/api": { target: server, changeOrigin: true },
      "/socket.io": { target: server, ws: true, changeOrigin: true },
    },
  },
});
