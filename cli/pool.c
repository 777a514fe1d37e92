/* pool.c: `cella pool status` and `cella pool leave` (docs/pool.md). */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "commands.h"

int cmd_pool_status(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *h;
	size_t i;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "GET", "/v1/pool", NULL, &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
		json_decref(out);
		return EXIT_OK;
	}
	printf("pool %s (this host: %s)\n",
	       json_string_value(json_object_get(out, "pool")) ?: "?",
	       json_string_value(json_object_get(out, "host")) ?: "?");
	printf("%-20s %-12s %10s %5s %-28s %s\n", "HOST", "STATE", "MEMORY", "CPUS", "ADDRESS",
	       "VMS");
	json_array_foreach(json_object_get(out, "hosts"), i, h) {
		json_t *vms = json_object_get(h, "vms"), *v;
		char mem[32];
		size_t k;

		snprintf(mem, sizeof(mem), "%lld MiB",
			 (long long)json_integer_value(json_object_get(h, "memory_mib")));
		printf("%-20s %-12s %10s %5lld %-28s ", json_string_value(json_object_get(h, "name")),
		       json_string_value(json_object_get(h, "state")) ?: "?", mem,
		       (long long)json_integer_value(json_object_get(h, "cpus")),
		       json_string_value(json_object_get(h, "address")) ?: "-");
		if (!json_array_size(vms))
			fputs("-", stdout);
		json_array_foreach(vms, k, v)
			printf("%s%s", k ? "," : "", json_string_value(v) ?: "?");
		putchar('\n');
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_pool_leave(struct client *c, int argc, char **argv)
{
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "POST", "/v1/pool/leave", NULL, NULL);
	if (!ret && !c->json)
		printf("this host left the pool\n");
	return ret;
}
