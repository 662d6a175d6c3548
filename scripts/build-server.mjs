// Bundles the server's own code (apps/server and the @repo/* workspace
// packages) into apps/server/dist/main.mjs for `npm start`, which then runs
// it with plain `node`: without the TypeScript loader the process is
// 30–37 MiB smaller (BENCHMARKS.md, "The server's memory"). Every npm
// dependency stays external and is loaded from node_modules as usual, so
// packages that find their own files (PGlite's WebAssembly, the agent CLIs)
// work unchanged. The bundle sits at the same depth as apps/server/src, so
// paths the server resolves relative to its own file still point to the
// same places.
import { build } from "esbuild";

const ownCode = /^@repo\//;

await build({
  entryPoints: ["apps/server/src/main.ts"],
  outfile: "apps/server/dist/main.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning",
  plugins: [
    {
      name: "npm-dependencies-external",
      setup(builder) {
        builder.onResolve({ filter: /^[^./]/ }, (args) =>
          ownCode.test(args.path) ? undefined : { path: args.path, external: true },
        );
      },
    },
  ],
});
