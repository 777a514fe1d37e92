/* switch.c: a switch's definition and its Linux bridge on the host, over
 * netlink (libnl-route-3); see switch.h. */
#include "switch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include "swnl.h"

static const char *const type_names[] = {
	[SW_EXTERNAL] = "external", [SW_INTERNAL] = "internal", [SW_PRIVATE] = "private",
};

const char *sw_type_name(enum sw_type t)
{
	return t <= SW_PRIVATE ? type_names[t] : "?";
}

static bool ifname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool sw_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SW_NAME_MAX || !ifname_char(s[0]) || s[0] == '.' || s[0] == '_' ||
	    s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ifname_char(s[i]))
			return false;
	return true;
}

void sw_bridge_name(const char *name, char out[IFNAMSIZ])
{
	uint32_t h = 2166136261u;

	if (strlen(name) + 4 < IFNAMSIZ) {
		snprintf(out, IFNAMSIZ, "cbr-%s", name);
		return;
	}
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(out, IFNAMSIZ, "cbr-%.5s.%05x", name, h & 0xfffff);
}

/* "A.B.C.D/N" or an IPv6 address with its prefix. */
static bool cidr_valid(const char *s)
{
	char addr[64], *slash, *end;
	unsigned char buf[16];
	long n;
	int af;

	if (strlen(s) >= sizeof(addr))
		return false;
	snprintf(addr, sizeof(addr), "%s", s);
	slash = strchr(addr, '/');
	if (!slash || !slash[1])
		return false;
	*slash = 0;
	af = strchr(addr, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(af, addr, buf) != 1)
		return false;
	errno = 0;
	n = strtol(slash + 1, &end, 10);
	if (*end || errno || n < 1 || n > (af == AF_INET ? 32 : 128))
		return false;
	return true;
}

int sw_def_parse(const json_t *j, struct sw_def *d, struct cerr *e)
{
	const char *key, *type = NULL;
	json_t *v;

	memset(d, 0, sizeof(*d));
	if (!json_is_object(j))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach((json_t *)j, key, v) {
		const char *s = json_string_value(v);

		if (strcmp(key, "name") && strcmp(key, "type") && strcmp(key, "uplink") &&
		    strcmp(key, "address") && strcmp(key, "bridge") && strcmp(key, "stateful"))
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		if (json_is_null(v) && (!strcmp(key, "uplink") || !strcmp(key, "address") ||
					!strcmp(key, "stateful")))
			continue;
		if (!strcmp(key, "stateful")) { /* its ports' ACLs' default */
			if (!json_is_boolean(v))
				return cerr_set(e, CERR_INVALID, key, "expected true or false");
			d->stateful = json_is_true(v);
			continue;
		}
		if (!s)
			return cerr_set(e, CERR_INVALID, key, "expected a string");
		if (!strcmp(key, "name")) {
			if (!sw_name_valid(s))
				return cerr_set(e, CERR_INVALID, "name", "expected 1-%d of A-Z a-z 0-9 "
						". _ -, starting with a letter or digit", SW_NAME_MAX);
			snprintf(d->name, sizeof(d->name), "%s", s);
		} else if (!strcmp(key, "type")) {
			type = s;
		} else if (!strcmp(key, "uplink")) {
			if (!*s || strlen(s) >= IFNAMSIZ || strchr(s, '/') || !strcmp(s, ".") ||
			    !strcmp(s, ".."))
				return cerr_set(e, CERR_INVALID, "uplink", "expected a host interface "
						"name (1-%d characters)", IFNAMSIZ - 1);
			snprintf(d->uplink, sizeof(d->uplink), "%s", s);
		} else if (!strcmp(key, "address")) {
			if (!cidr_valid(s))
				return cerr_set(e, CERR_INVALID, "address", "expected an address with "
						"its prefix length (CIDR), e.g. 10.0.0.1/24");
			snprintf(d->address, sizeof(d->address), "%s", s);
		}
	}
	if (!d->name[0])
		return cerr_set(e, CERR_INVALID, "name", "required");
	if (!type)
		return cerr_set(e, CERR_INVALID, "type", "required (external, internal or private)");
	if (!strcmp(type, "external"))
		d->type = SW_EXTERNAL;
	else if (!strcmp(type, "internal"))
		d->type = SW_INTERNAL;
	else if (!strcmp(type, "private"))
		d->type = SW_PRIVATE;
	else
		return cerr_set(e, CERR_INVALID, "type", "expected external, internal or private");
	if (d->type == SW_EXTERNAL && !d->uplink[0])
		return cerr_set(e, CERR_INVALID, "uplink", "required for an external switch");
	if (d->type != SW_EXTERNAL && d->uplink[0])
		return cerr_set(e, CERR_INVALID, "uplink", "only an external switch has an uplink");
	if (d->type != SW_INTERNAL && d->address[0])
		return cerr_set(e, CERR_INVALID, "address", "only an internal switch has a host "
				"address");
	sw_bridge_name(d->name, d->bridge);
	return 0;
}

json_t *sw_def_json(const struct sw_def *d)
{
	json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:s}", "name", d->name, "type",
			      sw_type_name(d->type), "uplink", d->uplink[0] ? d->uplink : NULL,
			      "address", d->address[0] ? d->address : NULL, "bridge", d->bridge);

	if (o && d->stateful)
		json_object_set_new(o, "stateful", json_true());
	return o;
}

/* A private switch's bridge gives the host no presence on it: no IPv6
 * (so no link-local address), no ARP answers for the host's other
 * addresses, and strict reverse-path filtering drops any IPv4 packet sent to
 * the bridge's MAC (no route points back through it). */
static int private_isolate(const char *br, struct cerr *e)
{
	static const char *const knobs[][2] = {
		{ "ipv6/conf/%s/disable_ipv6", "1" },
		{ "ipv4/conf/%s/arp_ignore", "8" },
		{ "ipv4/conf/%s/rp_filter", "1" },
		{ "ipv4/conf/%s/forwarding", "0" },
	};

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		char path[128], rel[96];
		int fd;

		snprintf(rel, sizeof(rel), knobs[i][0], br);
		snprintf(path, sizeof(path), "/proc/sys/net/%s", rel);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && strstr(rel, "ipv6"))
			continue; /* a kernel without IPv6 */
		if (fd < 0 || write(fd, knobs[i][1], 1) != 1) {
			int err = errno;

			if (fd >= 0)
				close(fd);
			return cerr_set(e, CERR_INTERNAL, "", "cannot isolate the host from bridge "
					"%s: %s: %s", br, path, strerror(err));
		}
		close(fd);
	}
	return 0;
}

static int add_address(struct nl_sock *sk, int ifindex, const char *cidr, bool may_exist,
		       struct cerr *e)
{
	struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	int err;

	if (!a)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	err = nl_addr_parse(cidr, strchr(cidr, ':') ? AF_INET6 : AF_INET, &local);
	if (!err) {
		rtnl_addr_set_ifindex(a, ifindex);
		err = rtnl_addr_set_local(a, local);
		if (!err)
			rtnl_addr_set_prefixlen(a, nl_addr_get_prefixlen(local));
		if (!err)
			err = rtnl_addr_add(sk, a, may_exist ? 0 : NLM_F_EXCL);
		if (err == -NLE_EXIST && may_exist)
			err = 0;
	}
	nl_addr_put(local);
	rtnl_addr_put(a);
	if (err)
		return cerr_set(e, CERR_INVALID, "address", "cannot put %s on the bridge: %s",
				cidr, nl_geterror(err));
	return 0;
}

/* The uplink of an external switch may be enslaved to br: it exists, is no
 * bridge, and no other bridge holds it. *idx: its ifindex. */
static int uplink_check(struct nl_sock *sk, const struct sw_def *d, int br_idx, int *idx,
			struct cerr *e)
{
	struct rtnl_link *up = NULL;
	const char *type;
	bool is_bridge;
	int master, err;

	if (!strcmp(d->uplink, d->bridge) || !strncmp(d->uplink, "cbr-", 4))
		return cerr_set(e, CERR_INVALID, "uplink", "%s is a switch's bridge", d->uplink);
	err = rtnl_link_get_kernel(sk, 0, d->uplink, &up);
	if (err)
		return cerr_set(e, CERR_INVALID, "uplink", "no interface %s on this host (%s)",
				d->uplink, nl_geterror(err));
	type = rtnl_link_get_type(up); /* the link's: compared before it is put */
	is_bridge = type && !strcmp(type, "bridge");
	master = rtnl_link_get_master(up);
	*idx = rtnl_link_get_ifindex(up);
	rtnl_link_put(up);
	if (is_bridge)
		return cerr_set(e, CERR_INVALID, "uplink", "%s is a bridge", d->uplink);
	if (master && master != br_idx)
		return cerr_set(e, CERR_CONFLICT, "uplink", "%s is already in a bridge or bond "
				"(ifindex %d)", d->uplink, master);
	return 0;
}

/* Configure the existing bridge br (ifindex idx) as d says. */
static int bridge_configure(struct nl_sock *sk, const struct sw_def *d, int idx, bool may_exist,
			    struct cerr *e)
{
	int err, up_idx;

	if (d->type == SW_EXTERNAL) {
		if (uplink_check(sk, d, idx, &up_idx, e))
			return -1;
		err = rtnl_link_enslave_ifindex(sk, idx, up_idx);
		if (err)
			return cerr_set(e, CERR_INTERNAL, "uplink", "cannot attach %s to %s: %s",
					d->uplink, d->bridge, nl_geterror(err));
		if ((err = swnl_set_up(sk, up_idx)))
			return cerr_set(e, CERR_INTERNAL, "uplink", "cannot bring %s up: %s",
					d->uplink, nl_geterror(err));
	} else if (d->type == SW_INTERNAL && d->address[0]) {
		if (add_address(sk, idx, d->address, may_exist, e))
			return -1;
	} else if (d->type == SW_PRIVATE) {
		if (private_isolate(d->bridge, e))
			return -1;
	}
	if ((err = swnl_set_up(sk, idx)))
		return cerr_set(e, CERR_INTERNAL, "", "cannot bring %s up: %s", d->bridge,
				nl_geterror(err));
	return 0;
}

static int bridge_make(struct nl_sock *sk, const struct sw_def *d, int *idx, struct cerr *e)
{
	struct rtnl_link *l = rtnl_link_alloc();
	int err;

	if (!l)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	rtnl_link_set_name(l, d->bridge);
	err = rtnl_link_set_type(l, "bridge");
	if (!err)
		err = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(l);
	if (err == -NLE_EXIST)
		return cerr_set(e, CERR_EXISTS, "name", "an interface %s (this switch's bridge) "
				"exists already on the host", d->bridge);
	if (err)
		return cerr_set(e, CERR_INTERNAL, "", "cannot create bridge %s: %s", d->bridge,
				nl_geterror(err));
	*idx = swnl_index(sk, d->bridge);
	if (*idx <= 0)
		return cerr_set(e, CERR_INTERNAL, "", "bridge %s vanished after its creation",
				d->bridge);
	return 0;
}

int sw_host_create(const struct sw_def *d, struct cerr *e)
{
	struct nl_sock *sk = swnl_open(e);
	int idx, up_idx;

	if (!sk)
		return -1;
	/* Checked before anything is made, so the usual refusals leave the
	 * host untouched; the rollback below covers the rest. */
	if (swnl_index(sk, d->bridge) > 0) {
		swnl_close(sk);
		return cerr_set(e, CERR_EXISTS, "name", "an interface %s (this switch's bridge) "
				"exists already on the host", d->bridge);
	}
	if (d->type == SW_EXTERNAL && uplink_check(sk, d, -1, &up_idx, e)) {
		swnl_close(sk);
		return -1;
	}
	if (bridge_make(sk, d, &idx, e)) {
		swnl_close(sk);
		return -1;
	}
	if (bridge_configure(sk, d, idx, false, e)) {
		swnl_delete(sk, d->bridge); /* releases the uplink too */
		swnl_close(sk);
		return -1;
	}
	swnl_close(sk);
	return 0;
}

int sw_host_ensure(const struct sw_def *d, struct cerr *e)
{
	struct nl_sock *sk = swnl_open(e);
	int idx, ret;

	if (!sk)
		return -1;
	idx = swnl_index(sk, d->bridge);
	if (idx <= 0) {
		if (bridge_make(sk, d, &idx, e)) {
			swnl_close(sk);
			return -1;
		}
	}
	ret = bridge_configure(sk, d, idx, true, e);
	/* An uplink that is gone (or an address refused) must not cut the VMs
	 * on the switch off from each other: the bridge stays, up. */
	if (ret)
		swnl_set_up(sk, idx);
	swnl_close(sk);
	return ret;
}

void sw_host_delete(const struct sw_def *d)
{
	struct cerr e;
	struct nl_sock *sk = swnl_open(&e);

	if (!sk)
		return;
	swnl_delete(sk, d->bridge);
	swnl_close(sk);
}

bool sw_host_br_netfilter(void)
{
	char c = 0;
	int fd = open("/proc/sys/net/bridge/bridge-nf-call-iptables", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false; /* br_netfilter not loaded */
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == '1';
}

json_t *sw_host_status(const struct sw_def *d)
{
	struct cerr e;
	struct nl_sock *sk = swnl_open(&e);
	struct nl_cache *cache = NULL;
	struct rtnl_link *br;
	json_t *o = json_object(), *ports = json_array();

	json_object_set_new(o, "present", json_false());
	json_object_set_new(o, "ports", ports);
	if (!sk)
		return o;
	if (rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache) == 0 &&
	    (br = rtnl_link_get_by_name(cache, d->bridge))) {
		int idx = rtnl_link_get_ifindex(br);

		json_object_set_new(o, "present", json_true());
		json_object_set_new(o, "up", json_boolean(rtnl_link_get_flags(br) & IFF_UP));
		for (struct nl_object *it = nl_cache_get_first(cache); it;
		     it = nl_cache_get_next(it)) {
			struct rtnl_link *l = (struct rtnl_link *)it;

			if (rtnl_link_get_master(l) == idx)
				json_array_append_new(ports, json_string(rtnl_link_get_name(l)));
		}
		rtnl_link_put(br);
	}
	if (cache)
		nl_cache_free(cache);
	swnl_close(sk);
	return o;
}
