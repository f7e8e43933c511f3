/**
 * A second, private QMP monitor on a socketpair, for the one thing the main
 * QMP connection (qmp.ts) cannot do: hand qemu an open file descriptor.
 * qemu 7.2's outgoing migration takes only `fd:<name>` of a descriptor given
 * with `getfd`, which must arrive as SCM_RIGHTS on the same monitor that then
 * runs `migrate`. The socketpair's other end is inherited by qemu
 * (`-chardev socket,id=fdmon,fd=N -mon chardev=fdmon,mode=control`), so no
 * path is exposed to anyone, and qemu can write the saved state into a file
 * it could not open itself (it runs as HELPER_USER under -runas).
 *
 * Raw libc through bun:ffi (socketpair, sendmsg, poll, read); every wait is
 * bounded and polls without blocking the event loop.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import fs from "node:fs";
import { parseQmpLine } from "./qmp.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const POLLIN = 1;
const MAX_LINE = 64 * 1024;

let libc: ReturnType<typeof openLibc> | undefined;
function openLibc() {
  return dlopen("libc.so.6", {
    socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    sendmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
    poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  }).symbols;
}
const lib = () => (libc ??= openLibc());

/** [ours, qemu's]: both close-on-exec (the spawn dup2s qemu's into place). */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  if (lib().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ptr(fds)) !== 0) throw new Error("socketpair failed");
  return [fds[0]!, fds[1]!];
}

/** Send `text` with `fd` attached (SCM_RIGHTS). */
function sendWithFd(sock: number, text: string, fd: number): void {
  const data = Buffer.from(text);
  const iov = new BigUint64Array([BigInt(ptr(data)), BigInt(data.length)]);
  // struct cmsghdr { size_t len; int level; int type; } + one int, padded to CMSG_SPACE(4) = 24
  const cmsg = new ArrayBuffer(24);
  const cv = new DataView(cmsg);
  cv.setBigUint64(0, 20n, true); // CMSG_LEN(sizeof(int))
  cv.setInt32(8, SOL_SOCKET, true);
  cv.setInt32(12, SCM_RIGHTS, true);
  cv.setInt32(16, fd, true);
  const cmsgBytes = new Uint8Array(cmsg);
  // struct msghdr (x86_64): name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad)
  const msg = new ArrayBuffer(56);
  const mv = new DataView(msg);
  mv.setBigUint64(16, BigInt(ptr(iov)), true);
  mv.setBigUint64(24, 1n, true);
  mv.setBigUint64(32, BigInt(ptr(cmsgBytes)), true);
  mv.setBigUint64(40, 24n, true);
  const n = lib().sendmsg(sock, ptr(new Uint8Array(msg)), 0);
  if (Number(n) !== data.length) throw new Error("sending a descriptor to qemu failed");
}

export class FdMonitor {
  private buf = Buffer.alloc(0);
  constructor(private readonly sock: number) {}

  private async readLine(deadline: number): Promise<string> {
    const pfd = new Int16Array(4);
    const chunk = Buffer.alloc(8192);
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl >= 0) {
        const line = this.buf.subarray(0, nl).toString("utf8");
        this.buf = this.buf.subarray(nl + 1);
        return line;
      }
      if (this.buf.length > MAX_LINE) throw new Error("qemu's monitor sent an overlong line");
      new Int32Array(pfd.buffer)[0] = this.sock;
      pfd[2] = POLLIN;
      pfd[3] = 0;
      const r = lib().poll(ptr(pfd), 1, 0);
      if (r > 0) {
        const n = Number(lib().read(this.sock, ptr(chunk), chunk.length));
        if (n <= 0) throw new Error("qemu closed its private monitor");
        this.buf = Buffer.concat([this.buf, chunk.subarray(0, n)]);
        continue;
      }
      if (r < 0) throw new Error("poll on qemu's private monitor failed");
      if (performance.now() > deadline) throw new Error("qemu's private monitor did not answer");
      await Bun.sleep(5);
    }
  }

  /** The next reply (events are skipped). */
  private async reply(deadline: number): Promise<unknown> {
    for (;;) {
      const msg = parseQmpLine(await this.readLine(deadline));
      if (msg.kind === "error") throw new Error(msg.desc);
      if (msg.kind === "return") return msg.value;
    }
  }

  async connect(timeoutMs = 15_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (parseQmpLine(await this.readLine(deadline)).kind !== "greeting");
    await this.cmd("qmp_capabilities", undefined, timeoutMs);
  }

  async cmd(name: string, args?: Record<string, unknown>, timeoutMs = 15_000, fd?: number): Promise<unknown> {
    const text = `${JSON.stringify(args ? { execute: name, arguments: args } : { execute: name })}\n`;
    if (fd === undefined) fs.writeSync(this.sock, text);
    else sendWithFd(this.sock, text, fd);
    return this.reply(performance.now() + timeoutMs);
  }

  close(): void {
    try {
      fs.closeSync(this.sock);
    } catch {}
  }
}
