/**
 * Where an image comes from. One module per kind in ./sources/ (what a kind
 * is: ./sources/kind.ts); SOURCES is the ordered table: the first whose probe
 * accepts the img_id resolves it (local accepts any id without ':' so it
 * comes last).
 *
 * Resolving checks everything that can fail before the disk is touched
 * (file exists inside IMAGE_DIR and is readable, URL answers 2xx).
 */
import { SnfError } from "../errors.ts";
import type { ImageSource, ResolveOptions, SourceKind } from "./sources/kind.ts";
import { nullSource } from "./sources/null.ts";
import { httpSource } from "./sources/http.ts";
import { localSource } from "./sources/local.ts";

export const SOURCES: readonly SourceKind[] = [nullSource, httpSource, localSource];

export async function resolveImageSource(imgId: string, o: ResolveOptions): Promise<ImageSource> {
  const id = imgId.trim();
  if (!id) throw new SnfError("img_id is empty");
  for (const s of SOURCES) if (s.probe(id)) return s.resolve(id, o);
  const scheme = id.slice(0, id.indexOf(":"));
  throw new SnfError(`unsupported image source "${scheme}:" (supported: null, local://NAME or NAME, http://, https://)`);
}
