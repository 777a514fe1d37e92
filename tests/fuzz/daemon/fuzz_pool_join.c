/* fuzz_pool_join.c: what a host admitting others reads from the network,
 * on arbitrary bytes: join tokens, URLs, certificate requests (GnuTLS:
 * PEM, signature, subject) and the join request bodies that carry them
 * (daemon/pool/join_parse.c, ca.c). A token that parses prints back as the
 * same string. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ca.h"
#include "join_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), host[256], again[POOL_TOKEN_LEN + 1];
	struct pool_join_req req;
	struct pool_token t;
	struct cerr e;
	json_t *j;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (pool_token_parse(s, &t, &e) == 0) {
		snprintf(again, sizeof(again), "%s.%s.%s", t.id, t.secret, t.ca_hash);
		if (strcmp(again, s))
			abort(); /* a token reads as what it says */
	}
	if (pool_url_host(s, "address", host, sizeof(host), &e) == 0 && !host[0])
		abort();
	if (pool_ca_check_csr(s, size, "host-x", &e) != 0 && !e.reason[0])
		abort(); /* a refusal says why */
	j = json_loadb(s, size, 0, NULL);
	if (j) {
		if (pool_join_req_parse(j, &req, &e) == 0 &&
		    (!req.name || !req.csr || req.cpus < 1))
			abort();
		json_decref(j);
	}
	free(s);
	return 0;
}
