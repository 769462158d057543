/**
 * A node's two loads over time: each sample goes through both asymmetric
 * filters; the tracker then gives the policy's {@link LocalView} and the
 * {@link Announcement} to send.
 *
 * @module
 */
import { ExportedLoadFilter, instantLoad, LocalLoadFilter } from "./load.ts";
import type { BalanceSettings } from "./settings.ts";
import type { Announcement, LoadSample, LocalView } from "./types.ts";

/** Work accepted from peers that has not arrived yet: it counts at once in the announcement. */
export interface Incoming {
  /** Normalised load of the processes on their way here. */
  load: number;
  /** Their memory in bytes. */
  memory: number;
}

/** Follows one node's load through the local and the exported filters. */
export class LoadTracker {
  /** The node's id. */
  readonly id: string;
  readonly #local: LocalLoadFilter;
  readonly #exported: ExportedLoadFilter;
  #sample?: LoadSample;
  #incoming: Incoming = { load: 0, memory: 0 };

  /**
   * A tracker with both filters at 0.
   *
   * @param id the node's id
   * @param settings gives the filters' gains
   */
  constructor(id: string, settings: BalanceSettings) {
    this.id = id;
    this.#local = new LocalLoadFilter(settings.localRiseGain);
    this.#exported = new ExportedLoadFilter(settings.exportDecayGain);
  }

  /** The last sample, if any. */
  get sample(): LoadSample | undefined {
    return this.#sample;
  }

  /** The local load (rises slowly, falls at once). */
  get localLoad(): number {
    return this.#local.value;
  }

  /** The exported load (rises at once, decays slowly), incoming work included. */
  get exportedLoad(): number {
    return this.#exported.value;
  }

  /** Feeds a sample and the work accepted but not yet arrived. */
  observe(sample: LoadSample, incoming: Incoming = { load: 0, memory: 0 }): void {
    const x = instantLoad(sample);
    this.#sample = sample;
    this.#incoming = incoming;
    this.#local.update(x);
    this.#exported.update(x + incoming.load);
  }

  /**
   * Records work just accepted from a peer: the exported load rises at once by its
   * load, so the next announcement shows it, and its memory is reserved.
   */
  accepted(incoming: Incoming): void {
    this.#incoming = {
      load: this.#incoming.load + incoming.load,
      memory: this.#incoming.memory + incoming.memory,
    };
    this.#exported.update(this.#exported.value + incoming.load);
  }

  /** The view the policy takes; requires a sample. */
  localView(drain: boolean, sendBacklog = 0): LocalView {
    const s = this.#need();
    return {
      id: this.id,
      load: this.#local.value,
      cpus: s.cpus,
      speed: s.speed,
      memTotal: s.memTotal,
      memAvailable: s.memAvailable,
      drain,
      sendBacklog,
      ...(s.runqueue ? { runqueue: s.runqueue } : {}),
    };
  }

  /** The announcement to send; requires a sample. */
  announcement(drain: boolean): Announcement {
    const s = this.#need();
    return {
      id: this.id,
      load: this.#exported.value,
      cpus: s.cpus,
      speed: s.speed,
      memTotal: s.memTotal,
      memAvailable: Math.max(0, s.memAvailable - this.#incoming.memory),
      drain,
      at: s.at,
    };
  }

  #need(): LoadSample {
    if (!this.#sample) throw new Error(`LoadTracker ${this.id}: no sample yet`);
    return this.#sample;
  }
}
