/* mig_tls.h: the migration connection: TLS 1.3 over a TCP socket with mutual
 * certificate authentication (OpenSSL), carrying migstream records.
 *
 * Both ends present a certificate signed by the configured CA and verify
 * the peer's (chain, and its name when one is configured). Reads and writes
 * block, bounded by socket timeouts, so a silent peer cannot hang a worker.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/* Certificates: PEM text (the sandboxed worker receives them in the control
 * command) or, when the text is NULL, a file path read at open time. */
struct mig_tls_cfg {
	const char *cert_pem, *key_pem, *ca_pem;
	const char *cert_file, *key_file, *ca_file;
	const char *peer_name; /* expected DNS name / CN of the peer; NULL: any
				* certificate the CA signed */
};

struct mig_conn;

/* The TLS layer is a module (cella-tls.so) loaded on first use: call this
 * before the worker's sandbox hides the file system if a migration may come
 * later. 0, or -ENOENT with the reason in err. Idempotent, thread-safe. */
int mig_tls_load(char *err, size_t errlen) __must_check;
/* The same on a thread of its own, started early in the worker's set-up
 * (OpenSSL's dynamic linking costs milliseconds, which then overlap with
 * creating the VM); mig_tls_preload_wait joins it (to be called before a
 * sandbox, which wants the process single-threaded) and returns what
 * mig_tls_load returned, or loads here if no thread was started. */
void mig_tls_preload_start(void);
int mig_tls_preload_wait(char *err, size_t errlen) __must_check;
/* Join a preload thread still running (before exit: a process should not
 * run its library destructors while another thread is inside dlopen). */
void mig_tls_preload_end(void);

/* Handshake on the connected socket fd (taken over: closed by
 * mig_conn_close, or here on failure). server: the destination side.
 * timeout_ms bounds each read and write. 0 or -errno (err says why). */
int mig_conn_open(struct mig_conn **out, int fd, bool server, const struct mig_tls_cfg *cfg,
		  unsigned timeout_ms, char *err, size_t errlen) __must_check;
/* Write/read exactly len bytes. 0 or -errno (-ECONNRESET: the peer closed). */
int mig_conn_write(struct mig_conn *c, const void *buf, size_t len) __must_check;
int mig_conn_read(struct mig_conn *c, void *buf, size_t len) __must_check;
/* One record: header and payload in one write. */
int mig_conn_send(struct mig_conn *c, uint16_t type, const void *payload,
		  uint32_t len) __must_check;
/* Build a record in place: mig_conn_reserve returns room for a payload of
 * up to len bytes (NULL: no memory); mig_conn_send_reserved sends the first
 * len bytes of it as a record of `type`. Saves a copy of page batches. */
uint8_t *mig_conn_reserve(struct mig_conn *c, uint32_t len);
int mig_conn_send_reserved(struct mig_conn *c, uint16_t type, uint32_t len) __must_check;
/* The peer's certificate subject (after the handshake), for logs. */
const char *mig_conn_peer(const struct mig_conn *c);
/* The last error's text (OpenSSL's or the system's). */
const char *mig_conn_error(const struct mig_conn *c);
uint64_t mig_conn_bytes_out(const struct mig_conn *c);
/* Orderly TLS close (best effort) and close the socket. NULL is fine. */
void mig_conn_close(struct mig_conn *c);
/* Make blocked reads/writes of c fail now (from another thread). */
void mig_conn_abort(struct mig_conn *c);
