/* join_parse.h: what a host admitting others reads from the network: join
 * tokens and join requests (no etcd, no HTTP: fuzzed alone,
 * tests/fuzz/daemon/fuzz_pool_join.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ca.h"
#include "cerr.h"
#include "compiler.h"

/* A join token: "ID.SECRET.CAHASH", lowercase hex: ID (6) names its record
 * in etcd, SECRET (32) is stored only hashed, CAHASH pins the pool's CA
 * (SHA-256 of its public key) for the joining host. */
#define POOL_TOKEN_ID_HEX 6
#define POOL_TOKEN_SECRET_HEX 32
#define POOL_TOKEN_LEN (POOL_TOKEN_ID_HEX + 1 + POOL_TOKEN_SECRET_HEX + 1 + POOL_CA_HASH_HEX)

struct pool_token {
	char id[POOL_TOKEN_ID_HEX + 1];
	char secret[POOL_TOKEN_SECRET_HEX + 1];
	char ca_hash[POOL_CA_HASH_HEX + 1];
};

/* 0, or -1 with e (field "token"). */
int pool_token_parse(const char *s, struct pool_token *t, struct cerr *e) __must_check;
/* SHA-256 of the secret, hex (POOL_CA_HASH_HEX + 1 bytes): what etcd keeps. */
int pool_token_secret_hash(const char *secret, char *hex) __must_check;
/* Constant time over the length of a (hex strings). */
bool pool_hex_eq(const char *a, const char *b);

/* A join request: {"token", "name", "csr", "address"?, "memory_mib",
 * "cpus"}; strings point into the JSON (valid while it lives). */
struct pool_join_req {
	struct pool_token token;
	const char *name, *csr, *address;
	uint64_t memory_mib;
	unsigned cpus;
};

/* Checks every field (and the CSR: PEM, signature, CN = name); unknown
 * keys refused. 0 or -1 with e (invalid). */
int pool_join_req_parse(json_t *body, struct pool_join_req *req, struct cerr *e) __must_check;
/* "https://HOST:PORT[/]" with HOST an address or name: 0, HOST in host (the
 * IP SAN of a certificate), or -1 with e (field). */
int pool_url_host(const char *url, const char *field, char *host, size_t len,
		  struct cerr *e) __must_check;
