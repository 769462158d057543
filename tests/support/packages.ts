/**
 * The Debian packages the test suite needs, by who needs them: each test
 * installs its own list (`ensurePackages`), and `deno task test` installs
 * them all in one go at its start (tests/support/prepare.ts), while the
 * host unit tests run, instead of one apt transaction per test.
 *
 * @module
 */
import { BENCH_PACKAGES } from "../../bench/lib/environment.ts";

/** The packages each part of the suite installs for itself. */
export const TEST_PACKAGES = {
  kmod: ["kmod", "make", "gcc"],
  checkpatch: ["linux-source-6.1", "xz-utils", "perl"],
  checkpoint: ["python3", "bc", "util-linux", "nodejs"],
  migrate: ["python3", "coreutils", "tcpdump", "nodejs"],
  mpi: ["mpich", "libmpich-dev", "openmpi-bin", "libopenmpi-dev", "gcc"],
  operations: ["slurm-wlm", "munge", "dkms"],
  security: ["util-linux", "coreutils"],
  socket: ["python3", "iproute2", "golang-go"],
  /** The quick bench test runs bench/run.ts, which installs these. */
  bench: BENCH_PACKAGES.tools,
} as const satisfies Record<string, readonly string[]>;

/** Every package of {@link TEST_PACKAGES}, once each. */
export function allTestPackages(): string[] {
  return [...new Set(Object.values(TEST_PACKAGES).flat())].sort();
}
