/**
 * Peer discovery over UDP multicast: authenticated announcements, replay
 * protection, the peer table, and the announcer and listener that run them.
 * docs/discovery.md describes the packet and the rules.
 *
 * @module
 */
export * from "./announcement.ts";
export * from "./announcer.ts";
export * from "./counters.ts";
export * from "./events.ts";
export * from "./listener.ts";
export * from "./local.ts";
export * from "./log.ts";
export * from "./replay.ts";
export * from "./service.ts";
export * from "./socket.ts";
export * from "./state.ts";
export * from "./table.ts";
export * from "./wire.ts";
