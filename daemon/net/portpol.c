/* portpol.c: a switch port's policy: the NIC's "policy" object parsed and
 * checked (every refusal names policy.<field>), shown back as JSON, and put
 * on the host (nftables in portpol_nft.c, tc in portpol_tc.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "portpol_int.h"

int pp_cidr_parse(const char *s, struct pp_cidr *c)
{
	char buf[64], *slash, *end;
	int max;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	memset(c, 0, sizeof(*c));
	slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	if (inet_pton(AF_INET, buf, c->addr) == 1)
		c->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
		c->family = AF_INET6, max = 128;
	else
		return -1;
	c->plen = max;
	if (slash) {
		long n;

		if (!slash[1] || slash[1] < '0' || slash[1] > '9')
			return -1;
		errno = 0;
		n = strtol(slash + 1, &end, 10);
		if (errno || *end || n < 0 || n > max)
			return -1;
		c->plen = (int)n;
	}
	/* Host bits cleared: 10.0.0.5/24 is 10.0.0.0/24. */
	for (int i = 0; i < 16; i++) {
		int keep = c->plen - i * 8;

		if (keep <= 0)
			c->addr[i] = 0;
		else if (keep < 8)
			c->addr[i] &= (uint8_t)(0xff << (8 - keep));
	}
	return 0;
}

void pp_cidr_format(const struct pp_cidr *c, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(c->family, c->addr, a, sizeof(a));
	snprintf(out, len, "%s/%d", a, c->plen);
}

/* Whether two prefixes share an address (any address overlaps all). */
static bool cidr_overlap(const struct pp_cidr *a, const struct pp_cidr *b)
{
	int n;

	if (!a->family || !b->family)
		return true;
	if (a->family != b->family)
		return false;
	n = a->plen < b->plen ? a->plen : b->plen;
	for (int i = 0; i < n; i++) {
		int bit = 7 - i % 8;

		if (((a->addr[i / 8] >> bit) & 1) != ((b->addr[i / 8] >> bit) & 1))
			return false;
	}
	return true;
}

static int bad(struct cerr *e, const char *field, const char *why)
{
	char f[64];

	snprintf(f, sizeof(f), "policy.%.56s", field);
	return cerr_set(e, CERR_INVALID, f, "%s", why);
}

static int parse_bool(const json_t *v, bool *out, const char *field, struct cerr *e)
{
	if (!json_is_boolean(v))
		return bad(e, field, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int parse_vid(const json_t *v, unsigned *vid)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4094)
		return -1;
	*vid = (unsigned)json_integer_value(v);
	return 0;
}

/* A trunk entry: a VID, "A-B", or [A, B]. */
static int parse_vid_range(const json_t *v, unsigned *lo, unsigned *hi)
{
	if (json_is_integer(v)) {
		if (parse_vid(v, lo))
			return -1;
		*hi = *lo;
		return 0;
	}
	if (json_is_array(v) && json_array_size(v) == 2)
		return parse_vid(json_array_get(v, 0), lo) || parse_vid(json_array_get(v, 1), hi) ||
		       *lo > *hi ? -1 : 0;
	if (json_is_string(v)) {
		unsigned a, b;
		int n = 0;

		if (sscanf(json_string_value(v), "%4u-%4u%n", &a, &b, &n) != 2 ||
		    (size_t)n != strlen(json_string_value(v)) || a < 1 || b > 4094 || a > b)
			return -1;
		*lo = a, *hi = b;
		return 0;
	}
	return -1;
}

static int parse_vlan(const json_t *v, struct port_policy *p, struct cerr *e)
{
	const json_t *acc, *tr;
	unsigned vid;
	size_t i;
	json_t *it;

	if (json_is_integer(v)) {
		if (parse_vid(v, &vid))
			return bad(e, "vlan", "a VLAN is 1-4094");
		p->vlan = PP_VLAN_ACCESS, p->access = (uint16_t)vid;
		return 0;
	}
	if (!json_is_object(v))
		return bad(e, "vlan", "must be a VID, {\"access\": VID} or {\"trunk\": [VIDs or ranges]}");
	acc = json_object_get(v, "access");
	tr = json_object_get(v, "trunk");
	if (json_object_size(v) != 1 || (!acc && !tr))
		return bad(e, "vlan", "must have exactly one of access, trunk");
	if (acc) {
		if (parse_vid(acc, &vid))
			return bad(e, "vlan.access", "a VLAN is 1-4094");
		p->vlan = PP_VLAN_ACCESS, p->access = (uint16_t)vid;
		return 0;
	}
	if (!json_is_array(tr) || !json_array_size(tr) || json_array_size(tr) > 4094)
		return bad(e, "vlan.trunk", "must be a list of VIDs or ranges (\"10-20\")");
	p->vlan = PP_VLAN_TRUNK;
	json_array_foreach(tr, i, it) {
		unsigned lo, hi;
		char f[32];

		snprintf(f, sizeof(f), "vlan.trunk[%u]", (unsigned)i);
		if (parse_vid_range(it, &lo, &hi))
			return bad(e, f, "a VID 1-4094 or a range \"A-B\" with A <= B");
		for (unsigned k = lo; k <= hi; k++) {
			if (pp_trunk_has(p, k))
				return bad(e, f, "overlaps an earlier entry");
			p->trunk[k / 8] |= (uint8_t)(1u << (k % 8));
		}
	}
	return 0;
}

static int parse_ips(const json_t *v, struct port_policy *p, struct cerr *e)
{
	size_t i;
	json_t *it;

	if (!json_is_array(v) || json_array_size(v) > PP_MAX_IPS)
		return bad(e, "ip_guard", "must be a list of at most 256 addresses or prefixes");
	p->ip_guard = true;
	json_array_foreach(v, i, it) {
		char f[32];

		snprintf(f, sizeof(f), "ip_guard[%u]", (unsigned)i);
		if (!json_is_string(it) || pp_cidr_parse(json_string_value(it), &p->ips[i]))
			return bad(e, f, "not an IPv4 or IPv6 address or prefix");
		for (size_t k = 0; k < i; k++)
			if (cidr_overlap(&p->ips[k], &p->ips[i]))
				return bad(e, f, "overlaps an earlier entry");
		p->nr_ips = i + 1;
	}
	return 0;
}

/* A rate in bits/s: an integer, or a string with k, M, G (SI). */
static int parse_rate(const json_t *v, uint64_t *out)
{
	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return -1;
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		double d;

		if (!*s || (*s < '0' || *s > '9'))
			return -1;
		d = strtod(s, &end);
		if (*end == 'k' || *end == 'K')
			d *= 1e3, end++;
		else if (*end == 'M')
			d *= 1e6, end++;
		else if (*end == 'G')
			d *= 1e9, end++;
		if (*end || !(d >= 1) || d > 1e15)
			return -1;
		*out = (uint64_t)d;
		return 0;
	}
	return -1;
}

static int parse_bandwidth(const json_t *v, struct port_policy *p, struct cerr *e)
{
	static const char *const keys[] = { "max_in", "max_out", "min", "link", "burst" };
	uint64_t *dst[] = { &p->max_in, &p->max_out, &p->min, &p->link, &p->burst };
	const char *k;
	json_t *it;

	if (!json_is_object(v))
		return bad(e, "bandwidth", "must be {max_in, max_out, burst, min, link}");
	json_object_foreach((json_t *)v, k, it) {
		size_t i;
		char f[32];

		for (i = 0; i < 5 && strcmp(k, keys[i]); i++)
			;
		snprintf(f, sizeof(f), "bandwidth.%.20s", k);
		if (i == 5)
			return bad(e, f, "unknown field (max_in, max_out, burst, min, link)");
		if (parse_rate(it, dst[i]))
			return bad(e, f, i == 4 ? "a size in bytes above zero"
					  : "a rate in bits/s above zero (e.g. 100000000 or \"100M\")");
		if (i < 4 && *dst[i] > PP_RATE_MAX)
			return bad(e, f, "past any link this host can shape (16 Gbit/s)");
		if (i < 4 && *dst[i] < 8000)
			return bad(e, f, "below 8 kbit/s");
		if (i == 4 && (*dst[i] < 1600 || *dst[i] > (1u << 30)))
			return bad(e, f, "a burst is 1600 bytes to 1 GiB");
	}
	if (p->link && (p->max_in > p->link || p->max_out > p->link || p->min > p->link))
		return bad(e, p->min > p->link ? "bandwidth.min" : p->max_in > p->link ?
			   "bandwidth.max_in" : "bandwidth.max_out", "past the link's rate (bandwidth.link)");
	if (p->min && p->max_out && p->min > p->max_out)
		return bad(e, "bandwidth.min", "above max_out");
	if (p->burst && !p->max_in && !p->max_out)
		return bad(e, "bandwidth.burst", "needs max_in or max_out");
	if (p->link && !p->min)
		return bad(e, "bandwidth.link", "only used with min");
	return 0;
}

static int parse_acl_one(const json_t *v, struct pp_acl *a, const char *f, struct cerr *e)
{
	const char *k;
	json_t *it;
	char ff[64];
	bool dir = false, act = false;

	if (!json_is_object(v))
		return bad(e, f, "must be {direction, action, remote, protocol, port}");
	memset(a, 0, sizeof(*a));
	json_object_foreach((json_t *)v, k, it) {
		const char *s = json_string_value(it);

		snprintf(ff, sizeof(ff), "%.30s.%.20s", f, k);
		if (!strcmp(k, "direction")) {
			if (!s || (strcmp(s, "in") && strcmp(s, "out")))
				return bad(e, ff, "in (to the VM) or out (from the VM)");
			a->out = !strcmp(s, "out"), dir = true;
		} else if (!strcmp(k, "action")) {
			if (!s || (strcmp(s, "allow") && strcmp(s, "deny")))
				return bad(e, ff, "allow or deny");
			a->allow = !strcmp(s, "allow"), act = true;
		} else if (!strcmp(k, "remote")) {
			if (!s || pp_cidr_parse(s, &a->remote))
				return bad(e, ff, "an IPv4 or IPv6 address or prefix");
		} else if (!strcmp(k, "protocol")) {
			if (!s || (strcmp(s, "tcp") && strcmp(s, "udp") && strcmp(s, "icmp") && strcmp(s, "any")))
				return bad(e, ff, "tcp, udp, icmp or any");
			a->proto = !strcmp(s, "tcp") ? PP_TCP : !strcmp(s, "udp") ? PP_UDP
				 : !strcmp(s, "icmp") ? PP_ICMP : PP_ANY;
		} else if (!strcmp(k, "port")) {
			unsigned lo, hi;
			int n = 0;

			if (json_is_integer(it) && json_integer_value(it) >= 1 && json_integer_value(it) <= 65535)
				lo = hi = (unsigned)json_integer_value(it);
			else if (!s || sscanf(s, "%5u-%5u%n", &lo, &hi, &n) != 2 || (size_t)n != strlen(s) ||
				 lo < 1 || hi > 65535 || lo > hi)
				return bad(e, ff, "a port 1-65535 or a range \"A-B\" with A <= B");
			a->port_lo = (uint16_t)lo, a->port_hi = (uint16_t)hi;
		} else {
			return bad(e, ff, "unknown field (direction, action, remote, protocol, port)");
		}
	}
	snprintf(ff, sizeof(ff), "%.30s.%s", f, !dir ? "direction" : "action");
	if (!dir || !act)
		return bad(e, ff, "is required");
	snprintf(ff, sizeof(ff), "%.30s.port", f);
	if (a->port_lo && a->proto != PP_TCP && a->proto != PP_UDP)
		return bad(e, ff, "a port needs protocol tcp or udp");
	return 0;
}

static bool acl_overlap(const struct pp_acl *a, const struct pp_acl *b)
{
	if (a->out != b->out || !cidr_overlap(&a->remote, &b->remote))
		return false;
	if (a->proto && b->proto && a->proto != b->proto)
		return false;
	if (a->port_lo && b->port_lo && (a->port_hi < b->port_lo || b->port_hi < a->port_lo))
		return false;
	return true;
}

static int parse_acl(const json_t *v, struct port_policy *p, struct cerr *e)
{
	size_t i;
	json_t *it;

	if (!json_is_array(v) || json_array_size(v) > PP_MAX_ACLS)
		return bad(e, "acl", "must be a list of at most 256 rules");
	p->acls = calloc(json_array_size(v) + 1, sizeof(*p->acls));
	if (!p->acls)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	json_array_foreach(v, i, it) {
		char f[32];

		snprintf(f, sizeof(f), "acl[%u]", (unsigned)i);
		if (parse_acl_one(it, &p->acls[i], f, e))
			return -1;
		for (size_t k = 0; k < i; k++)
			if (acl_overlap(&p->acls[k], &p->acls[i])) {
				char why[128];

				snprintf(why, sizeof(why), "overlaps acl[%zu] (same direction, "
					 "remote, protocol and ports)", k);
				return bad(e, f, why);
			}
		p->nr_acls = i + 1;
	}
	return 0;
}

static bool ifname_valid(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == '/' || *s == ':' || *s == '"' || *s == '\\' || *s > '~')
			return false;
	return true;
}

struct port_policy *portpol_parse(const json_t *j, struct cerr *e)
{
	struct port_policy *p = calloc(1, sizeof(*p));
	const char *k;
	json_t *v;

	if (!p) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		return NULL;
	}
	p->mac_guard = true;
	if (!j || json_is_null(j))
		return p;
	if (!json_is_object(j)) {
		cerr_set(e, CERR_INVALID, "policy", "must be an object");
		goto fail;
	}
	json_object_foreach((json_t *)j, k, v) {
		int r;

		if (!strcmp(k, "vlan"))
			r = parse_vlan(v, p, e);
		else if (!strcmp(k, "mac_guard"))
			r = parse_bool(v, &p->mac_guard, k, e);
		else if (!strcmp(k, "dhcp_guard"))
			r = parse_bool(v, &p->dhcp_guard, k, e);
		else if (!strcmp(k, "router_guard"))
			r = parse_bool(v, &p->router_guard, k, e);
		else if (!strcmp(k, "stateful"))
			r = parse_bool(v, &p->stateful, k, e);
		else if (!strcmp(k, "ip_guard"))
			r = parse_ips(v, p, e);
		else if (!strcmp(k, "acl"))
			r = parse_acl(v, p, e);
		else if (!strcmp(k, "bandwidth"))
			r = parse_bandwidth(v, p, e);
		else if (!strcmp(k, "mirror_to")) {
			r = 0;
			if (!json_is_string(v) || !ifname_valid(json_string_value(v)))
				r = bad(e, "mirror_to", "must be an interface name (1-15 characters)");
			else
				strcpy(p->mirror_to, json_string_value(v));
		} else {
			char f[64];

			snprintf(f, sizeof(f), "policy.%.40s", k);
			r = cerr_set(e, CERR_INVALID, f, "unknown field (vlan, mac_guard, ip_guard, "
				     "dhcp_guard, router_guard, acl, stateful, bandwidth, "
				     "mirror_to)");
		}
		if (r)
			goto fail;
	}
	return p;
fail:
	portpol_free(p);
	return NULL;
}

static json_t *trunk_json(const struct port_policy *p)
{
	json_t *a = json_array();

	for (unsigned v = 1; v <= 4094; v++) {
		unsigned hi = v;
		char s[16];

		if (!pp_trunk_has(p, v))
			continue;
		while (hi < 4094 && pp_trunk_has(p, hi + 1))
			hi++;
		if (hi == v) {
			json_array_append_new(a, json_integer(v));
		} else {
			snprintf(s, sizeof(s), "%u-%u", v, hi);
			json_array_append_new(a, json_string(s));
		}
		v = hi;
	}
	return a;
}

json_t *portpol_json(const struct port_policy *p)
{
	json_t *o = json_object();
	char s[64];

	if (p->vlan == PP_VLAN_ACCESS)
		json_object_set_new(o, "vlan", json_pack("{s:i}", "access", p->access));
	else if (p->vlan == PP_VLAN_TRUNK)
		json_object_set_new(o, "vlan", json_pack("{s:o}", "trunk", trunk_json(p)));
	json_object_set_new(o, "mac_guard", json_boolean(p->mac_guard));
	if (p->ip_guard) {
		json_t *a = json_array();

		for (size_t i = 0; i < p->nr_ips; i++) {
			pp_cidr_format(&p->ips[i], s, sizeof(s));
			json_array_append_new(a, json_string(s));
		}
		json_object_set_new(o, "ip_guard", a);
	}
	if (p->dhcp_guard)
		json_object_set_new(o, "dhcp_guard", json_true());
	if (p->router_guard)
		json_object_set_new(o, "router_guard", json_true());
	if (p->nr_acls) {
		static const char *const protos[] = { [PP_ANY] = "any", [PP_ICMP] = "icmp",
						      [PP_TCP] = "tcp", [PP_UDP] = "udp" };
		json_t *a = json_array();

		for (size_t i = 0; i < p->nr_acls; i++) {
			const struct pp_acl *r = &p->acls[i];
			json_t *x = json_pack("{s:s, s:s, s:s}", "direction", r->out ? "out" : "in",
					      "action", r->allow ? "allow" : "deny", "protocol",
					      protos[r->proto]);

			if (r->remote.family) {
				pp_cidr_format(&r->remote, s, sizeof(s));
				json_object_set_new(x, "remote", json_string(s));
			}
			if (r->port_lo == r->port_hi && r->port_lo)
				json_object_set_new(x, "port", json_integer(r->port_lo));
			else if (r->port_lo) {
				snprintf(s, sizeof(s), "%u-%u", r->port_lo, r->port_hi);
				json_object_set_new(x, "port", json_string(s));
			}
			json_array_append_new(a, x);
		}
		json_object_set_new(o, "acl", a);
	}
	if (p->max_in || p->max_out || p->min) {
		json_t *b = json_object();

		if (p->max_in)
			json_object_set_new(b, "max_in", json_integer((json_int_t)p->max_in));
		if (p->max_out)
			json_object_set_new(b, "max_out", json_integer((json_int_t)p->max_out));
		if (p->burst)
			json_object_set_new(b, "burst", json_integer((json_int_t)p->burst));
		if (p->min)
			json_object_set_new(b, "min", json_integer((json_int_t)p->min));
		if (p->link)
			json_object_set_new(b, "link", json_integer((json_int_t)p->link));
		json_object_set_new(o, "bandwidth", b);
	}
	if (p->mirror_to[0])
		json_object_set_new(o, "mirror_to", json_string(p->mirror_to));
	if (p->stateful)
		json_object_set_new(o, "stateful", json_true());
	return o;
}

bool portpol_stateful(const struct port_policy *p)
{
	return p && p->stateful;
}

void portpol_free(struct port_policy *p)
{
	if (!p)
		return;
	free(p->acls);
	free(p);
}

int portpol_worker_vlan(const struct port_policy *p)
{
	if (!p || p->vlan == PP_VLAN_NONE)
		return -1;
	return p->vlan == PP_VLAN_TRUNK ? 0 : (int)p->access;
}
