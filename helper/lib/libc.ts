/**
 * The few libc calls the helper makes directly (bun:ffi), where a tool start
 * under emulation would cost more than the call: ioctl (BLKRRPART,
 * RNDRESEEDCRNG), clock_settime, and syscall (finit_module). Opened on first use.
 */
import { dlopen, FFIType } from "bun:ffi";

function open() {
  return dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.ptr, FFIType.i64], returns: FFIType.i64 },
  }).symbols;
}
let symbols: ReturnType<typeof open> | undefined;
export const libc = (): ReturnType<typeof open> => (symbols ??= open());
