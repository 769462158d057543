/**
 * Installs what the module builds and the guest tests need (the cluster's
 * host packages, the 6.1 and 6.12 kernels with their headers, and every
 * test's packages) in as few apt transactions as it can. `deno task test`
 * runs it beside the host unit tests, which need none of it; each test
 * still installs what it needs by itself, so this only saves time.
 *
 * @module
 */
import { ensurePackages } from "../../core/host/packages.ts";
import { ensureKernel, HOST_PACKAGES } from "../../core/vcluster/kernels.ts";
import { allTestPackages } from "./packages.ts";

const progress = (s: string) => console.log(s);
const t0 = performance.now();
await ensurePackages(
  [...HOST_PACKAGES, ...allTestPackages()],
  "the module builds and guest tests",
  progress,
);
for (const line of ["6.1", "6.12"] as const) await ensureKernel(line, progress);
console.log(`ready in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
