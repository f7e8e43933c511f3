/**
 * DeleteSSHKeys: the image's SSH host keys are shared by every instance made
 * from it, so remove /etc/ssh/ssh_host_* and every HostKey file sshd_config
 * names, then generate fresh ones with the helper's own ssh-keygen (never a
 * binary from the image). Key types: SSH_HOST_KEY_TYPES property (e.g.
 * "ed25519 rsa"), else the types the HostKey lines name, else ed25519, ecdsa
 * and rsa. Keys of those types made by the host for this deployment
 * (params.hostKeys, generated natively while the image was copied) are used
 * as they are; any other type is generated here. Private keys 0600, public
 * 0644, root-owned; never logged.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Task, TaskContext } from "../task.ts";
import { isDirIn, listDirIn, mkdirIn, removeIn, writeFileIn } from "../lib/safepath.ts";
import { hostKeys, readSshdConfig } from "../os/sshd.ts";
import { isBsd } from "../os/bsd.ts";
import { hasCloudInit, keepHostKeys } from "../os/cloudinit.ts";

export const KEY_TYPES = ["ed25519", "ecdsa", "rsa"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

const keyTypeOfPath = (p: string): KeyType | undefined => {
  const m = /ssh_host_(ed25519|ecdsa|rsa)_key$/.exec(path.posix.basename(p));
  return m ? (m[1] as KeyType) : undefined;
};

export interface KeyPlan {
  type: KeyType;
  /** guest path of the private key */
  path: string;
}

/** Which keys to generate where. */
export function planHostKeys(hostKeyLines: string[], typesProp: string | undefined, warn: (m: string) => void): KeyPlan[] {
  const abs = hostKeyLines.map((p) => (p.startsWith("/") ? p : path.posix.join("/etc/ssh", p)));
  const byType = new Map<KeyType, string>();
  for (const p of abs) {
    const t = keyTypeOfPath(p);
    if (t && !byType.has(t)) byType.set(t, p);
    else if (!t) warn(`HostKey ${p}: cannot tell its key type from the name; no new key generated for it`);
  }
  let types: KeyType[];
  if (typesProp && typesProp.trim() !== "") {
    types = [];
    for (const t of typesProp.trim().toLowerCase().split(/[\s,]+/)) {
      if (!(KEY_TYPES as readonly string[]).includes(t)) throw new Error(`SSH_HOST_KEY_TYPES: unknown key type ${JSON.stringify(t)} (use ${KEY_TYPES.join(", ")})`);
      if (!types.includes(t as KeyType)) types.push(t as KeyType);
    }
  } else if (byType.size > 0) types = [...byType.keys()];
  else types = [...KEY_TYPES];
  return types.map((type) => ({ type, path: byType.get(type) ?? `/etc/ssh/ssh_host_${type}_key` }));
}

export async function deleteSshKeys(ctx: TaskContext): Promise<void> {
  if (!isDirIn(ctx.root, "/etc/ssh")) {
    ctx.info("the image has no /etc/ssh; no host keys to replace");
    return;
  }
  const hk = hostKeys(readSshdConfig(ctx.root));
  const plan = planHostKeys(hk, ctx.props.get("SSH_HOST_KEY_TYPES"), ctx.warn);
  let removed = 0;
  for (const n of listDirIn(ctx.root, "/etc/ssh")) if (n.startsWith("ssh_host_") && removeIn(ctx.root, `/etc/ssh/${n}`)) removed++;
  for (const p of hk) {
    const abs = p.startsWith("/") ? p : path.posix.join("/etc/ssh", p);
    for (const f of [abs, `${abs}.pub`]) if (removeIn(ctx.root, f)) removed++;
  }
  ctx.info(`removed ${removed} old host key file(s)`);
  if (isBsd(ctx.os.family)) {
    ctx.info(`${ctx.os.family} makes new host keys itself at first boot (its rc runs ssh-keygen for missing keys)`);
    return;
  }
  const work = fs.mkdtempSync(path.join(ctx.scratch, "hostkeys-"));
  try {
    for (const k of plan) {
      const t0 = performance.now();
      const given = ctx.params.hostKeys.find((h) => h.type === k.type);
      if (given) {
        mkdirIn(ctx.root, path.posix.dirname(k.path));
        writeFileIn(ctx.root, k.path, given.privateKey, { mode: 0o600, uid: 0, gid: 0 });
        writeFileIn(ctx.root, `${k.path}.pub`, given.publicKey, { mode: 0o644, uid: 0, gid: 0 });
        ctx.info(`new ${k.type} host key ${k.path} (made on the host for this deployment)`);
        continue;
      }
      const tmp = path.join(work, `key_${k.type}`);
      const cmd = ["ssh-keygen", "-q", "-t", k.type, "-N", "", "-C", `root@${ctx.params.hostname}`, "-f", tmp];
      if (k.type === "rsa") cmd.push("-b", "3072");
      await ctx.run(cmd);
      mkdirIn(ctx.root, path.posix.dirname(k.path));
      writeFileIn(ctx.root, k.path, fs.readFileSync(tmp), { mode: 0o600, uid: 0, gid: 0 });
      writeFileIn(ctx.root, `${k.path}.pub`, fs.readFileSync(`${tmp}.pub`), { mode: 0o644, uid: 0, gid: 0 });
      ctx.info(`new ${k.type} host key ${k.path} (${Math.round(performance.now() - t0)} ms)`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Under CLOUD_INIT: cloud-init's first boot would delete the fresh keys made
 * here and generate its own (all its ssh_genkeytypes, DSA included: seconds
 * of RSA keygen under TCG, and not the keys the host made for this deployment).
 */
async function deleteSshKeysTask(ctx: TaskContext): Promise<void> {
  await deleteSshKeys(ctx);
  if (ctx.props.bool("CLOUD_INIT") && hasCloudInit(ctx.root)) ctx.info(`cloud-init told to keep these host keys (${keepHostKeys(ctx.root)})`);
}

export const task: Task = {
  name: "DeleteSSHKeys",
  mounted: true,
  excludable: true,
  families: ["linux", "freebsd", "openbsd", "netbsd"],
  run: deleteSshKeysTask,
};
