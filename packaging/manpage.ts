/**
 * The ppm(8) man page, generated from the command tree's own --help texts
 * so that it never drifts from the commands.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

/** Escapes text for roff: backslashes, and a leading dot or quote on a line. */
export function roffEscape(s: string): string {
  return s.replace(/\\/g, "\\e").split("\n").map((l) => /^[.']/.test(l) ? `\\&${l}` : l).join(
    "\n",
  );
}

/** The man page of `root` (section 8), dated `date` (YYYY-MM-DD). */
export function manPage(root: AnyCommand, version: string, date: string): string {
  const out: string[] = [
    `.TH PPM 8 "${date}" "ppm ${roffEscape(version)}" "System Administration"`,
    ".SH NAME",
    `ppm \\- ${roffEscape(root.description())}`,
    ".SH SYNOPSIS",
    ".B ppm",
    ".I command",
    "[\\fIoptions\\fR]",
    ".SH DESCRIPTION",
    "ppm moves running processes between the nodes of a Linux cluster, with their TCP " +
    "connections, listeners and UDP sockets. Each node runs the agent (\\fBppm daemon\\fR, " +
    "the \\fBppm.service\\fR unit) and the kernel module (the \\fBppm-dkms\\fR package).",
    ".SH COMMANDS",
  ];
  const walk = (cmd: AnyCommand, path: string) => {
    for (const sub of cmd.commands as AnyCommand[]) {
      const p = `${path} ${sub.name()}`;
      out.push(`.SS "${roffEscape(p)}"`, ".nf", roffEscape(sub.helpInformation().trimEnd()), ".fi");
      walk(sub, p);
    }
  };
  walk(root, "ppm");
  out.push(
    ".SH FILES",
    ".TP",
    ".I /etc/ppm/secret",
    "the cluster secret (root's, mode 0600); \\fBppm secret generate\\fR writes one",
    ".TP",
    ".I /etc/ppm/ppm.json",
    "the agent's configuration; \\fBppm config show\\fR prints the effective one",
    ".TP",
    ".I /var/lib/ppm, /run/ppm",
    "state and runtime directories",
    ".SH SEE ALSO",
    "\\fBsystemctl\\fR(1), \\fBdkms\\fR(8), /usr/share/doc/ppm/",
  );
  return out.join("\n") + "\n";
}
