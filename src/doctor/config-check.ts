/** doctor: the config file parses and every value is valid. */
import { type Config, configPath, loadConfig, parseConfig } from "../config.ts";
import { errorMessage } from "../errors.ts";
import { type CheckOutcome, fail, ok, warn } from "./schema.ts";

export interface ConfigCheck {
  outcome: CheckOutcome;
  /** The config the other checks use: the file's, or the defaults when it is broken. */
  config: Config;
}

export function checkConfig(env: Record<string, string | undefined>): ConfigCheck {
  const path = configPath(env);
  try {
    const config = loadConfig(env);
    const where = path ?? "no config file (defaults)";
    if (config.warnings.length) {
      return {
        config,
        outcome: warn(`${where}: ${config.warnings.length} setting(s) ignored: ${config.warnings[0]}`, `remove or fix the ignored setting(s) in ${path}`, {
          details: config.warnings,
        }),
      };
    }
    const presets = Object.keys(config.presets);
    return {
      config,
      outcome: ok(`${where} parses; all values valid${presets.length ? `; presets ${presets.join(", ")}` : ""}`),
    };
  } catch (e) {
    return {
      config: parseConfig("", null),
      outcome: fail(`${errorMessage(e)}; the other checks use the defaults`, `fix that line in ${path ?? "the config file"} (see the comments in /etc/snf-image/snf-image.conf)`),
    };
  }
}
