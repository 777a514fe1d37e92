/* vsock_relay.h: the cellad side of a sandboxed worker's virtio-vsock
 * (docs/security.md, "virtio-vsock"). The worker cannot create or connect
 * sockets (seccomp) nor reach run_dir (its root is empty), so cellad makes
 * the listening socket (run_dir/UUID.vsock) and, for connections the guest
 * opens to host port P, connects to "run_dir/UUID.vsock_P" on the worker's
 * behalf and passes the connected descriptor back. */
#pragma once

/* A SOCK_SEQPACKET pair: returns the worker's end (close-on-exec; the
 * spawn places it), or -errno. A detached thread serves the other end:
 * each request is {u32 seq, u32 port}, each answer {u32 seq, i32 status}
 * (0 or -errno) with the connected stream socket attached when 0 (the seq
 * lets the worker drop a late answer to a request it gave up on). The thread
 * connects only to uds_path + "_" + decimal port, at most 1 s per try,
 * and ends when every copy of the worker's end is closed. */
int vsock_relay_start(const char *uds_path);
