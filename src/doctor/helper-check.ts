/** doctor: HELPER_DIR holds a helper image built for this protocol version. */
import { errorMessage } from "../errors.ts";
import { loadHelperImage } from "../helper-image/load.ts";
import { PROTOCOL_VERSION } from "../protocol.ts";
import { type CheckOutcome, fail, ok, warn } from "./schema.ts";
import { ufsBuildPackages } from "../helper-image/ufs.ts";

export type HelperImage = ReturnType<typeof loadHelperImage>;

export const UPDATE_COMMAND = "snf-image-update-helper";

export function checkHelperImage(dir: string): { outcome: CheckOutcome; image: HelperImage | null } {
  try {
    const image = loadHelperImage(dir);
    const m = image.manifest;
    const what = `helper image in ${dir}: protocol ${m.protocol}, snf-image ${m.version}, kernel ${m.kernel}, built ${m.built}`;
    if (!m.ufsWrite) {
      return {
        image,
        outcome: warn(
          `${what}; it has no UFS write support, so FreeBSD/OpenBSD/NetBSD images will fail`,
          `install ${ufsBuildPackages(m.kernel).join(" ")} and rebuild the helper (snf-image helper build)`,
        ),
      };
    }
    return { image, outcome: ok(`${what}, UFS write from linux-source ${m.ufsWrite}`) };
  } catch (e) {
    return {
      image: null,
      outcome: fail(errorMessage(e), `run ${UPDATE_COMMAND} (or snf-image helper build) to build the helper for protocol ${PROTOCOL_VERSION}`),
    };
  }
}
