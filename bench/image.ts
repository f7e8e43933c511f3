/** The benchmarks' image: the 2 GiB bookworm diskdump (msdos, ext4) in a fresh IMAGE_DIR under /var/tmp. */
import { mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { placeImage } from "../test/lib/deploy.ts";
import { type DebianImage, debianImage } from "../test/lib/images.ts";

export async function benchImage(prefix: string): Promise<{ img: DebianImage; work: string; images: string }> {
  const img = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", sizeMiB: 2048 });
  const work = mkdtempSync(`/var/tmp/${prefix}`);
  const images = join(work, "images");
  mkdirSync(images);
  placeImage(img.path, join(images, "bookworm"));
  return { img, work, images };
}
