/**
 * Writes the restore plan of an image (for plan_fuzz.c): make_plan.ts IMAGE PLAN
 *
 * @module
 */
import { pathSource } from "../../../core/host/bytes.ts";
import { loadImage } from "../../../core/image/schema.ts";
import { PlanWriter, stubBase } from "../../../core/restore/memory_plan.ts";

const img = await loadImage(pathSource(Deno.args[0]));
const f = await Deno.open(Deno.args[1], { write: true, create: true, truncate: true });
await new PlanWriter(f).finish(img, stubBase(img));
f.close();
