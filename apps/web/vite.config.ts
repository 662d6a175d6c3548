/**
 * Builds the single-page app into dist/, which the server serves at `/`.
 * In development the API and the socket are proxied to a server on :3000.
 */
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const server = process.env.UMBRA_SERVER_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  server: {
    proxy: {
      "/api": { target: server, changeOrigin: true },
      "/socket.io": { target: server, ws: true, changeOrigin: true },
    },
  },
});
