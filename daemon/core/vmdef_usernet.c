/* vmdef_usernet.c: a user-mode NIC's port forwards in a definition
 * ("forward": ["tcp:HOSTPORT:GUESTPORT", ...], kept as "tcp:H:G,udp:H:G").
 * Checks that need the host (a port in use) are daemon/core/sup_usernet.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdef_priv.h"

int vmdef_forward_parse(const char *s, bool *udp, unsigned *host, unsigned *guest)
{
	unsigned long h, g;
	char *end;

	if (!strncmp(s, "tcp:", 4))
		*udp = false;
	else if (!strncmp(s, "udp:", 4))
		*udp = true;
	else
		return -1;
	s += 4;
	if (*s < '0' || *s > '9')
		return -1;
	h = strtoul(s, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return -1;
	g = strtoul(end + 1, &end, 10);
	if (*end && *end != ',')
		return -1;
	if (h < 1 || h > 65535 || g < 1 || g > 65535)
		return -2;
	*host = (unsigned)h;
	*guest = (unsigned)g;
	return 0;
}

const char *vmdef_forward_next(const char *p, bool *udp, unsigned *host, unsigned *guest)
{
	const char *comma;

	if (!p || !*p || vmdef_forward_parse(p, udp, host, guest))
		return NULL;
	comma = strchr(p, ',');
	return comma ? comma + 1 : p + strlen(p);
}

int usernet_forwards_parse(json_t *v, char *out, size_t outlen, const char *field,
			   struct cerr *e)
{
	size_t i, len = 0;
	json_t *it;

	out[0] = 0;
	if (json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return cerr_set(e, CERR_INVALID, field, "expected an array of \"tcp|udp:HOSTPORT:"
				"GUESTPORT\"");
	if (json_array_size(v) > VMDEF_FORWARDS_MAX)
		return cerr_set(e, CERR_INVALID, field, "at most %d forwards", VMDEF_FORWARDS_MAX);
	json_array_foreach(v, i, it) {
		const char *s = json_string_value(it);
		unsigned h, g, h2, g2;
		bool udp, udp2;
		int r = s && strlen(s) < 16 && !strchr(s, ',') ? vmdef_forward_parse(s, &udp, &h, &g)
							       : -1;

		if (r == -1)
			return cerr_set(e, CERR_INVALID, field, "'%s' is not tcp|udp:HOSTPORT:"
					"GUESTPORT", s ? s : "(not a string)");
		if (r == -2)
			return cerr_set(e, CERR_INVALID, field, "'%s': ports are 1 to 65535", s);
		for (const char *p = out; (p = vmdef_forward_next(p, &udp2, &h2, &g2));)
			if (udp2 == udp && h2 == h)
				return cerr_set(e, CERR_INVALID, field, "host port %s:%u is forwarded "
						"twice", udp ? "udp" : "tcp", h);
		len += (size_t)snprintf(out + len, outlen - len, "%s%s:%u:%u", len ? "," : "",
					udp ? "udp" : "tcp", h, g);
		if (len >= outlen)
			return cerr_set(e, CERR_INVALID, field, "too long");
	}
	return 0;
}

json_t *usernet_nic_json(const struct vmdef_nic *n)
{
	json_t *o = json_pack("{s:b}", "user", 1), *fw = json_array();
	unsigned h, g;
	bool udp;

	for (const char *p = n->forward; (p = vmdef_forward_next(p, &udp, &h, &g));) {
		char one[24];

		snprintf(one, sizeof(one), "%s:%u:%u", udp ? "udp" : "tcp", h, g);
		json_array_append_new(fw, json_string(one));
	}
	json_object_set_new(o, "forward", fw);
	if (n->mac[0])
		json_object_set_new(o, "mac", json_string(n->mac));
	return o;
}
