/** img_id "null": nothing to write (customize a disk that is already filled). */
import type { SourceKind } from "./kind.ts";

export const nullSource: SourceKind = {
  kind: "null",
  probe: (id) => id === "null",
  async resolve() {
    return {
      kind: "null",
      display: "null",
      size: 0,
      async open() {
        return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
      },
    };
  },
};
