// The web terminal (web/): Vite builds it into build/web, which the edge serves at / (make web).
// Hashed file names under /assets/ let the edge cache them for a year; index.html is revalidated.
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: "web",
  base: "/",
  build: {
    outDir: "../build/web",
    emptyOutDir: true,
    assetsDir: "assets",
    // No inline data: URLs, so the page's CSP can stay at 'self'.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  // `npx vite` serves web/ with live reload; its API calls go to the edge of `make run`.
  server: {
    proxy: { "/exchange.v1.": "http://localhost:8080" },
  },
  test: {
    root: ".",
    include: ["web/src/**/*.test.ts"],
    environment: "node",
  },
});
