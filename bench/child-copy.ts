/**
 * One copy as `create` runs it, for the benchmarks (run as a child so that
 * its peak RSS is its own): local source → openImage (compression, qcow2) →
 * writeImage. Prints the WriteResult, copyMs and maxRssKiB as JSON.
 *
 *   bun bench/child-copy.ts IMG DEV [IMG_FORMAT]
 */
import path from "node:path";
import { writeImage } from "../src/disk/writer.ts";
import { resolveImageSource } from "../src/image/source.ts";
import { openImage } from "../src/image/format.ts";
import type { ImageFormat } from "../src/protocol.ts";

const [img, dev, format = "diskdump"] = process.argv.slice(2) as [string, string, ImageFormat?];
const t0 = performance.now();
const src = await resolveImageSource(path.basename(img), { imageDir: path.dirname(img), format });
const { stream, size } = await openImage(src, undefined, format);
const r = await writeImage(stream, dev, { expectedSize: size });
console.log(JSON.stringify({ ...r, copyMs: performance.now() - t0, maxRssKiB: process.resourceUsage().maxRSS }));
process.exit(0);
