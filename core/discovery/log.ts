/**
 * The logging callback discovery reports through; the agent decides where
 * lines go and which levels are shown.
 *
 * @module
 */
import type { LogLevel } from "../config/schema.ts";

/** Receives one log line at a level. */
export type Logger = (level: LogLevel, message: string) => void;

/** A logger that drops everything. */
export const noLog: Logger = () => {};
