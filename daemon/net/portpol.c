/* portpol.c: stub (see portpol.h) until the nftables/tc implementation lands. */
#include <stdlib.h>
#include "portpol.h"

struct port_policy {
	int none;
};

struct port_policy *portpol_parse(const json_t *j, struct cerr *e)
{
	if (j && !json_is_null(j) && (!json_is_object(j) || json_object_size(j) != 0)) {
		cerr_set(e, CERR_INVALID, "policy", "port policies are not supported yet");
		return NULL;
	}
	return calloc(1, sizeof(struct port_policy));
}

json_t *portpol_json(const struct port_policy *p)
{
	(void)p;
	return json_object();
}

void portpol_free(struct port_policy *p)
{
	free(p);
}

int portpol_apply(const struct portpol_port *port, const struct port_policy *p, struct cerr *e)
{
	(void)port, (void)p, (void)e;
	return 0;
}

void portpol_remove(const struct portpol_port *port)
{
	(void)port;
}

json_t *portpol_counters(const struct portpol_port *port)
{
	(void)port;
	return NULL;
}
