/* mig_tls_ops.h: the table the TLS module (cella-tls.so, built from
 * mig_tls.c and linked with OpenSSL) exports as `cella_tls_ops`.
 * cella-vm loads the module only when a VM migrates (tls_loader.c), so
 * workers that never migrate don't map and relocate libssl and libcrypto
 * (about 1.7 MiB of resident pages and 1.5 ms of start-up time each). */
#pragma once
#include "migrate/mig_tls.h"

#define MIG_TLS_ABI 1 /* bump when the table or a signature changes */

struct mig_tls_ops {
	unsigned abi;
	int (*open)(struct mig_conn **out, int fd, bool server, const struct mig_tls_cfg *cfg,
	            unsigned timeout_ms, char *err, size_t errlen);
	int (*write)(struct mig_conn *c, const void *buf, size_t len);
	int (*read)(struct mig_conn *c, void *buf, size_t len);
	int (*send)(struct mig_conn *c, uint16_t type, const void *payload, uint32_t len);
	uint8_t *(*reserve)(struct mig_conn *c, uint32_t len);
	int (*send_reserved)(struct mig_conn *c, uint16_t type, uint32_t len);
	const char *(*peer)(const struct mig_conn *c);
	const char *(*error)(const struct mig_conn *c);
	uint64_t (*bytes_out)(const struct mig_conn *c);
	void (*close)(struct mig_conn *c);
	void (*abort)(struct mig_conn *c);
};
