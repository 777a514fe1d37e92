/* net.c: the NIC rules (see net.h). */
#include "conf/net.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "conf/schema.h"

bool conf_mac_parse(const char *s, uint8_t mac[6])
{
	uint8_t b[6];

	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 6; i++) {
		const char *p = s + 3 * i;

		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
		    (i < 5 && p[2] != ':'))
			return false;
		b[i] = (uint8_t)((isdigit((unsigned char)p[0]) ? p[0] - '0'
							      : (tolower((unsigned char)p[0]) - 'a' + 10)) << 4 |
				 (isdigit((unsigned char)p[1]) ? p[1] - '0'
							      : (tolower((unsigned char)p[1]) - 'a' + 10)));
	}
	if (b[0] & 1)
		return false;
	if (mac)
		memcpy(mac, b, 6);
	return true;
}

bool conf_tap_valid(const char *s)
{
	return conf_name_valid(s, CONF_TAP_NAME_MAX);
}

static bool parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return false;
	v = strtoul(s, &end, 10);
	if (*end || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

bool conf_vlan_parse(const char *s, unsigned *vid, bool *trunk)
{
	if (!strcmp(s, "trunk")) {
		*vid = 0;
		*trunk = true;
		return true;
	}
	*trunk = false;
	return parse_uint(s, 1, 4094, vid);
}

bool conf_mtu_parse(const char *s, unsigned *mtu)
{
	return parse_uint(s, 68, 65535, mtu);
}

bool conf_queues_parse(const char *s, unsigned *n)
{
	return parse_uint(s, 1, CONF_NET_MAX_QUEUES, n);
}
