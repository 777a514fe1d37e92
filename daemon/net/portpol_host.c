/* portpol_host.c: putting a port's policy on the host (portpol.h): tc first
 * (portpol_tc.c), then the nftables transaction (portpol_nft.c); a failure
 * of either takes the new tc objects away, and a failed transaction leaves
 * the port's previous rules in place. One flock serialises changes, since
 * ports share cellad's nft table and the uplink's qdisc. */
#include <stdio.h>
#include <string.h>

#include "portpol_int.h"

static bool mac_valid(const char *m)
{
	unsigned b[6];
	int n = 0;

	return m && sscanf(m, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
			   &n) == 6 && (size_t)n == strlen(m) && n == 17;
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n >= IFNAMSIZ)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == '"' || *s == '\\' || *s == '/' || *s > '~')
			return false;
	return true;
}

int portpol_apply(const struct portpol_port *port, const struct port_policy *p, struct cerr *e)
{
	int fd, r;

	if (!name_ok(port->ifname))
		return cerr_set(e, CERR_INTERNAL, "", "port interface name \"%s\" is not usable",
				port->ifname ? port->ifname : "");
	if (p->mac_guard && !mac_valid(port->mac))
		return cerr_set(e, CERR_INVALID, "policy.mac_guard", "the port has no MAC address "
				"(\"%s\") to guard", port->mac ? port->mac : "");
	if (p->mirror_to[0] && !strcmp(p->mirror_to, port->ifname))
		return cerr_set(e, CERR_INVALID, "policy.mirror_to", "a port cannot mirror to itself");
	fd = pp_lock();
	r = pp_tc_apply(port, p, e);
	if (!r) {
		r = pp_nft_apply(port, p, p->min ? pp_tc_minor(port->ifname) : 0, e);
		if (r)
			pp_tc_remove(port);
	}
	pp_unlock(fd);
	return r;
}

void portpol_remove(const struct portpol_port *port)
{
	int fd;

	if (!name_ok(port->ifname))
		return;
	fd = pp_lock();
	pp_nft_remove(port);
	pp_tc_remove(port);
	pp_unlock(fd);
}

json_t *portpol_counters(const struct portpol_port *port)
{
	if (!name_ok(port->ifname))
		return NULL;
	return pp_nft_counters(port);
}
