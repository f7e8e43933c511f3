/** doctor: HELPER_DIR holds a helper image built for this protocol version. */
import { errorMessage } from "../errors.ts";
import { loadHelperImage } from "../helper-image/load.ts";
import { PROTOCOL_VERSION } from "../protocol.ts";
import { type CheckOutcome, fail, ok } from "./schema.ts";

export type HelperImage = ReturnType<typeof loadHelperImage>;

export const UPDATE_COMMAND = "snf-image-update-helper";

export function checkHelperImage(dir: string): { outcome: CheckOutcome; image: HelperImage | null } {
  try {
    const image = loadHelperImage(dir);
    const m = image.manifest;
    return {
      image,
      outcome: ok(`helper image in ${dir}: protocol ${m.protocol}, snf-image ${m.version}, kernel ${m.kernel}, built ${m.built}`),
    };
  } catch (e) {
    return {
      image: null,
      outcome: fail(errorMessage(e), `run ${UPDATE_COMMAND} (or snf-image helper build) to build the helper for protocol ${PROTOCOL_VERSION}`),
    };
  }
}
