/* portpol_tool.c: drives daemon/net/portpol*.c alone for tests/net:
 *   portpol-tool parse JSON
 *   portpol-tool apply IFNAME MAC UPLINK JSON   (UPLINK "-" for none)
 *   portpol-tool remove IFNAME [UPLINK]
 *   portpol-tool counters IFNAME
 * Prints the policy or counters as JSON; errors as "field: reason", exit 1. */
#include <stdio.h>
#include <string.h>
#include <jansson.h>

#include "portpol.h"

static int fail(const struct cerr *e)
{
	fprintf(stderr, "%s: %s\n", e->field, e->reason);
	return 1;
}

int main(int argc, char **argv)
{
	struct portpol_port port = { .sw = "test", .bridge = "", .mac = "", .uplink = "" };
	struct cerr e = { 0 };
	struct port_policy *p;
	json_t *j;

	if (argc < 3) {
		fprintf(stderr, "usage: portpol-tool parse|apply|remove|counters ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "parse") || (!strcmp(argv[1], "apply") && argc == 6)) {
		const char *text = argv[1][0] == 'p' ? argv[2] : argv[5];
		json_error_t je;

		j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
		if (!j) {
			fprintf(stderr, "policy: not JSON: %s\n", je.text);
			return 1;
		}
		p = portpol_parse(j, &e);
		json_decref(j);
		if (!p)
			return fail(&e);
		if (argv[1][0] == 'a') {
			port.ifname = argv[2], port.mac = argv[3];
			port.uplink = strcmp(argv[4], "-") ? argv[4] : "";
			if (portpol_apply(&port, p, &e)) {
				portpol_free(p);
				return fail(&e);
			}
		}
		j = portpol_json(p);
		portpol_free(p);
		json_dumpf(j, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(j);
		return 0;
	}
	port.ifname = argv[2];
	if (!strcmp(argv[1], "remove")) {
		port.uplink = argc > 3 ? argv[3] : "";
		portpol_remove(&port);
		return 0;
	}
	if (!strcmp(argv[1], "counters")) {
		j = portpol_counters(&port);
		if (!j) {
			printf("null\n");
			return 0;
		}
		json_dumpf(j, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(j);
		return 0;
	}
	fprintf(stderr, "usage: portpol-tool parse|apply|remove|counters ...\n");
	return 2;
}
