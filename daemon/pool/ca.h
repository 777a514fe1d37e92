/* ca.h: the pool's certificate authority (GnuTLS): a host's key and
 * certificate request, the CA signing a host certificate, and the hash that
 * pins the CA in join tokens (docs/pool.md). PEM in, PEM out (malloc'd). */
#pragma once
#include <stddef.h>

#include "cerr.h"
#include "compiler.h"

#define POOL_CA_HASH_HEX 64 /* SHA-256 of the CA's SubjectPublicKeyInfo, hex */
#define POOL_PEM_MAX (16u << 10)
#define POOL_CERT_DAYS 365

/* A new ECDSA P-256 key (PKCS#8 PEM) and a certificate request for CN=name
 * signed with it. 0 or -1 with e. */
int pool_ca_make_key_csr(const char *name, char **key_pem, char **csr_pem,
			 struct cerr *e) __must_check;
/* Check a request from the network: PEM, self-signature valid, subject
 * CN exactly name. 0 or -1 with e (invalid). */
int pool_ca_check_csr(const char *csr_pem, size_t len, const char *name,
		      struct cerr *e) __must_check;
/* A host certificate for the request: CN and DNS SAN name, IP SAN ip (may
 * be NULL or not an address), TLS client and server, not a CA, valid
 * POOL_CERT_DAYS; signed by the CA. 0 or -1 with e. */
int pool_ca_sign(const char *ca_pem, const char *ca_key_pem, const char *csr_pem,
		 const char *name, const char *ip, char **cert_pem, struct cerr *e) __must_check;
/* The CA certificate checked (a CA, and key_pem its key when not NULL)
 * and its hash (hex, POOL_CA_HASH_HEX + 1 bytes). 0 or -1 with e. */
int pool_ca_hash(const char *ca_pem, const char *key_pem, char *hex, struct cerr *e) __must_check;
/* The subject CN of a PEM certificate (len bytes). 0 or -1. */
int pool_ca_cert_cn(const char *cert_pem, char *cn, size_t len) __must_check;
