import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "packages/*/test/**/*.test.ts",
      "apps/server/test/**/*.test.ts",
      "apps/sidecar/test/**/*.test.ts",
      "apps/cli/test/**/*.test.ts",
      "apps/web/test/**/*.test.{ts,tsx}",
    ],
    globalSetup: ["test/support/global-setup.ts"],
    setupFiles: ["test/support/clean-temp-dirs.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
