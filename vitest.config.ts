import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites that share one PostgreSQL server each use a database of their own.
    fileParallelism: true,
    pool: "forks"
  }
})
