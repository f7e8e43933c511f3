/** The snf-image version; build.ts and the Debian changelog agree with package.json. */
import pkg from "../package.json" with { type: "json" };

export const VERSION: string = pkg.version;
