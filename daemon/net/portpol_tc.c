/* portpol_tc.c: a port's bandwidth in tc, over netlink (libnl-route-3):
 *   max_in  (to the VM):   HTB ce01: on the tap's egress, one class ce01:1
 *   max_out (from the VM): the tap's ingress qdisc redirects everything
 *                          (u32 match-all, mirred) to an IFB "cifXXXXXXXX"
 *                          whose egress has the same HTB
 *   min     (reservation): HTB ce00: on the uplink's egress: ce00:1 at the
 *                          link's rate, one class per port (rate=min,
 *                          ceil=link) that the port's nft rules select by
 *                          setting skb->priority to ce00:<minor>, and the
 *                          default ce00:ffff (link/100, ceil=link).
 * This kernel has no police, so the VM->host direction needs the IFB. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/class.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/htb.h>

#include "portpol_int.h"
#include "swnl.h"

#define TAP_MAJOR    0xce01u
#define UPLINK_MAJOR 0xce00u
#define UPLINK_QUANTUM 3028u /* two full frames */

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

uint16_t pp_tc_minor(const char *ifname)
{
	return (uint16_t)(2 + fnv1a(ifname) % 0xfff0u);
}

void pp_ifb_name(const char *ifname, char out[IFNAMSIZ])
{
	snprintf(out, IFNAMSIZ, "cif%08x", fnv1a(ifname));
}

int pp_lock(void)
{
	int fd = open("/run/lock/cella-portpol.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		fd = open("/tmp/cella-portpol.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		while (flock(fd, LOCK_EX) && errno == EINTR)
			;
	return fd;
}

void pp_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* drops the flock */
}

/* The default burst: 10 ms at the rate, at least 16 KiB. */
static uint32_t burst_of(const struct port_policy *p, uint64_t rate)
{
	uint64_t b = p->burst ? p->burst : rate / 8 / 100;

	return (uint32_t)(b < 16384 ? 16384 : b > (1u << 30) ? 1u << 30 : b);
}

static int htb_root(struct nl_sock *sk, int idx, uint32_t major, uint32_t defcls)
{
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();
	int err;

	if (!q)
		return -NLE_NOMEM;
	rtnl_tc_set_ifindex(TC_CAST(q), idx);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(major, 0));
	err = rtnl_tc_set_kind(TC_CAST(q), "htb");
	if (!err)
		err = rtnl_htb_set_defcls(q, defcls);
	if (!err)
		err = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE);
	rtnl_qdisc_put(q);
	return err;
}

/* quantum 0: from the rate. The uplink's classes share one quantum, so
 * HTB lends the link's unreserved rate to them in equal parts. */
static int htb_class(struct nl_sock *sk, int idx, uint32_t parent, uint32_t id, uint64_t rate,
		     uint64_t ceil, uint32_t burst, uint32_t quantum)
{
	struct rtnl_class *c = rtnl_class_alloc();
	uint64_t q = quantum ? quantum : rate / 8 / 10;
	int err;

	if (!c)
		return -NLE_NOMEM;
	rtnl_tc_set_ifindex(TC_CAST(c), idx);
	rtnl_tc_set_parent(TC_CAST(c), parent);
	rtnl_tc_set_handle(TC_CAST(c), id);
	err = rtnl_tc_set_kind(TC_CAST(c), "htb");
	if (!err)
		err = rtnl_htb_set_rate64(c, rate / 8);
	if (!err)
		err = rtnl_htb_set_ceil64(c, ceil / 8);
	if (!err)
		err = rtnl_htb_set_rbuffer(c, burst);
	if (!err)
		err = rtnl_htb_set_cbuffer(c, burst);
	if (!err)
		err = rtnl_htb_set_quantum(c, (uint32_t)(q < 1600 ? 1600 : q > 200000 ? 200000 : q));
	if (!err)
		err = rtnl_class_add(sk, c, NLM_F_CREATE);
	rtnl_class_put(c);
	return err;
}

static void qdisc_del(struct nl_sock *sk, int idx, uint32_t parent)
{
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();

	if (!q)
		return;
	rtnl_tc_set_ifindex(TC_CAST(q), idx);
	rtnl_tc_set_parent(TC_CAST(q), parent);
	(void)rtnl_qdisc_delete(sk, q);
	rtnl_qdisc_put(q);
}

/* The handle of idx's qdisc at parent, or 0 when it has none of its own. */
static uint32_t qdisc_handle(struct nl_sock *sk, int idx, uint32_t parent, char kind[16])
{
	struct nl_cache *cache;
	struct rtnl_qdisc *q;
	uint32_t h = 0;

	kind[0] = 0;
	if (rtnl_qdisc_alloc_cache(sk, &cache))
		return 0;
	q = rtnl_qdisc_get_by_parent(cache, idx, parent);
	if (q) {
		h = rtnl_tc_get_handle(TC_CAST(q));
		snprintf(kind, 16, "%s", rtnl_tc_get_kind(TC_CAST(q)) ?: "");
		rtnl_qdisc_put(q);
	}
	nl_cache_free(cache);
	return h;
}

static int mirred(struct rtnl_cls *c, int how, int policy, int dev)
{
	struct rtnl_act *a = rtnl_act_alloc();
	int err;

	if (!a)
		return -NLE_NOMEM;
	err = rtnl_tc_set_kind(TC_CAST(a), "mirred");
	if (!err)
		err = rtnl_mirred_set_action(a, how);
	if (!err)
		err = rtnl_mirred_set_policy(a, policy);
	if (!err)
		err = rtnl_mirred_set_ifindex(a, (uint32_t)dev);
	if (!err)
		err = rtnl_u32_add_action(c, a);
	rtnl_act_put(a);
	return err;
}

/* max_out: ingress qdisc + u32 match-all + mirred redirect to the IFB,
 * after a mirred copy to mirror (> 0) when the port is mirrored. */
static int redirect_ingress(struct nl_sock *sk, int idx, int ifb, int mirror)
{
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();
	struct rtnl_cls *c = rtnl_cls_alloc();
	int err = -NLE_NOMEM;

	if (!q || !c)
		goto out;
	rtnl_tc_set_ifindex(TC_CAST(q), idx);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(0xffffu, 0));
	err = rtnl_tc_set_kind(TC_CAST(q), "ingress");
	if (!err)
		err = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE);
	if (err)
		goto out;
	rtnl_tc_set_ifindex(TC_CAST(c), idx);
	rtnl_tc_set_parent(TC_CAST(c), TC_HANDLE(0xffffu, 0));
	rtnl_cls_set_prio(c, 1);
	rtnl_cls_set_protocol(c, ETH_P_ALL);
	err = rtnl_tc_set_kind(TC_CAST(c), "u32");
	if (!err)
		err = rtnl_u32_add_key_uint32(c, 0, 0, 0, 0);
	if (!err && mirror > 0)
		err = mirred(c, TCA_EGRESS_MIRROR, TC_ACT_PIPE, mirror);
	if (!err)
		err = mirred(c, TCA_EGRESS_REDIR, TC_ACT_STOLEN, ifb);
	if (!err)
		err = rtnl_u32_set_cls_terminal(c);
	if (!err)
		err = rtnl_cls_add(sk, c, NLM_F_CREATE | NLM_F_EXCL);
out:
	if (q)
		rtnl_qdisc_put(q);
	if (c)
		rtnl_cls_put(c);
	return err;
}

static int ifb_create(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = rtnl_link_alloc();
	int err, idx;

	if (!l)
		return -NLE_NOMEM;
	rtnl_link_set_name(l, name);
	err = rtnl_link_set_type(l, "ifb");
	if (!err)
		err = rtnl_link_add(sk, l, NLM_F_CREATE);
	rtnl_link_put(l);
	if (err && err != -NLE_EXIST)
		return err;
	idx = swnl_index(sk, name);
	if (idx <= 0)
		return -NLE_OBJ_NOTFOUND;
	err = swnl_set_up(sk, idx);
	return err ? err : idx;
}

/* The uplink's rate in bits/s: the policy's link, else its speed, else 10G. */
static uint64_t link_rate(const char *uplink, const struct port_policy *p)
{
	char path[96];
	long speed = 0;
	FILE *f;

	if (p->link)
		return p->link;
	snprintf(path, sizeof(path), "/sys/class/net/%s/speed", uplink);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%ld", &speed) != 1)
			speed = 0;
		fclose(f);
	}
	return speed > 0 ? (uint64_t)speed * 1000000 : 10000000000ULL;
}

static int uplink_classes(struct nl_sock *sk, int idx, int *nr_ports)
{
	struct nl_cache *cache;
	struct nl_object *o;

	*nr_ports = 0;
	if (rtnl_class_alloc_cache(sk, idx, &cache))
		return -1;
	for (o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		uint32_t h = rtnl_tc_get_handle((struct rtnl_tc *)o);

		if (TC_H_MAJ(h) == TC_HANDLE(UPLINK_MAJOR, 0) && TC_H_MIN(h) != 1 &&
		    TC_H_MIN(h) != 0xffff)
			(*nr_ports)++;
	}
	nl_cache_free(cache);
	return 0;
}

static void class_del(struct nl_sock *sk, int idx, uint32_t id)
{
	struct rtnl_class *c = rtnl_class_alloc();

	if (!c)
		return;
	rtnl_tc_set_ifindex(TC_CAST(c), idx);
	rtnl_tc_set_handle(TC_CAST(c), id);
	(void)rtnl_class_delete(sk, c);
	rtnl_class_put(c);
}

static int apply_min(struct nl_sock *sk, const struct portpol_port *port,
		     const struct port_policy *p, struct cerr *e)
{
	int up = port->uplink[0] ? swnl_index(sk, port->uplink) : 0, err;
	uint64_t link = port->uplink[0] ? link_rate(port->uplink, p) : 0;
	uint32_t h;
	char kind[16];

	if (up <= 0)
		return cerr_set(e, CERR_INVALID, "policy.bandwidth.min", "a reservation needs an "
				"external switch (the uplink is what it is reserved on)");
	if (p->min > link || p->max_in > link || p->max_out > link)
		return cerr_set(e, CERR_INVALID, p->min > link ? "policy.bandwidth.min" :
				p->max_in > link ? "policy.bandwidth.max_in" : "policy.bandwidth.max_out",
				"past the uplink %s's rate (%llu bits/s)", port->uplink,
				(unsigned long long)link);
	h = qdisc_handle(sk, up, TC_H_ROOT, kind);
	if (h && h != TC_HANDLE(UPLINK_MAJOR, 0) && strcmp(kind, "pfifo_fast") && strcmp(kind, "noqueue"))
		return cerr_set(e, CERR_CONFLICT, "policy.bandwidth.min", "the uplink %s has a root "
				"qdisc (%s) cella did not make", port->uplink, kind);
	err = h == TC_HANDLE(UPLINK_MAJOR, 0) ? 0 : htb_root(sk, up, UPLINK_MAJOR, 0xffff);
	if (!err)
		err = htb_class(sk, up, TC_HANDLE(UPLINK_MAJOR, 0), TC_HANDLE(UPLINK_MAJOR, 1), link, link, 65536, 0);
	if (!err)
		err = htb_class(sk, up, TC_HANDLE(UPLINK_MAJOR, 1), TC_HANDLE(UPLINK_MAJOR, 0xffff),
				link / 100, link, 65536, UPLINK_QUANTUM);
	if (!err)
		err = htb_class(sk, up, TC_HANDLE(UPLINK_MAJOR, 1),
				TC_HANDLE(UPLINK_MAJOR, pp_tc_minor(port->ifname)), p->min, link, 65536, UPLINK_QUANTUM);
	if (err)
		return cerr_set(e, CERR_INTERNAL, "policy.bandwidth.min", "tc on the uplink %s: %s",
				port->uplink, nl_geterror(err));
	return 0;
}

static void remove_min(struct nl_sock *sk, const struct portpol_port *port)
{
	int up = port->uplink && port->uplink[0] ? swnl_index(sk, port->uplink) : 0, n;

	if (up <= 0)
		return;
	class_del(sk, up, TC_HANDLE(UPLINK_MAJOR, pp_tc_minor(port->ifname)));
	if (!uplink_classes(sk, up, &n) && n == 0) {
		char kind[16];

		if (qdisc_handle(sk, up, TC_H_ROOT, kind) == TC_HANDLE(UPLINK_MAJOR, 0))
			qdisc_del(sk, up, TC_H_ROOT);
	}
}

static void remove_port(struct nl_sock *sk, const struct portpol_port *port)
{
	int idx = swnl_index(sk, port->ifname);
	char ifb[IFNAMSIZ], kind[16];

	if (idx > 0) {
		if (qdisc_handle(sk, idx, TC_H_ROOT, kind) == TC_HANDLE(TAP_MAJOR, 0))
			qdisc_del(sk, idx, TC_H_ROOT);
		if (qdisc_handle(sk, idx, TC_H_INGRESS, kind))
			qdisc_del(sk, idx, TC_H_INGRESS);
	}
	pp_ifb_name(port->ifname, ifb);
	(void)swnl_delete(sk, ifb);
	remove_min(sk, port);
}

void pp_tc_remove(const struct portpol_port *port)
{
	struct cerr e;
	struct nl_sock *sk = swnl_open(&e);

	if (!sk)
		return;
	remove_port(sk, port);
	swnl_close(sk);
}

int pp_tc_apply(const struct portpol_port *port, const struct port_policy *p, struct cerr *e)
{
	struct nl_sock *sk = swnl_open(e);
	int idx, err = 0;
	char ifb[IFNAMSIZ];
	const char *what = "";

	if (!sk)
		return -1;
	idx = swnl_index(sk, port->ifname);
	if (idx <= 0) {
		swnl_close(sk);
		return cerr_set(e, CERR_INTERNAL, "", "port %s is gone", port->ifname);
	}
	if ((p->max_in || p->max_out) && port->uplink && port->uplink[0] && swnl_index(sk, port->uplink) > 0) {
		uint64_t link = link_rate(port->uplink, p);

		if (p->max_in > link || p->max_out > link) {
			cerr_set(e, CERR_INVALID, p->max_in > link ? "policy.bandwidth.max_in" :
				 "policy.bandwidth.max_out", "past the uplink %s's rate (%llu bits/s)",
				 port->uplink, (unsigned long long)link);
			swnl_close(sk);
			return -1;
		}
	}
	/* Replace: what the port had goes first (a moment without limits). */
	remove_port(sk, port);
	if (p->min && apply_min(sk, port, p, e))
		goto fail;
	if (p->max_in) {
		what = "policy.bandwidth.max_in";
		err = htb_root(sk, idx, TAP_MAJOR, 1);
		if (!err)
			err = htb_class(sk, idx, TC_HANDLE(TAP_MAJOR, 0), TC_HANDLE(TAP_MAJOR, 1), p->max_in, p->max_in,
					burst_of(p, p->max_in), 0);
	}
	if (!err && p->max_out) {
		int fi, mi = 0;

		if (p->mirror_to[0] && (mi = swnl_index(sk, p->mirror_to)) <= 0) {
			cerr_set(e, CERR_INVALID, "policy.mirror_to", "no interface %s on this host to "
				 "mirror to", p->mirror_to);
			goto fail;
		}
		what = "policy.bandwidth.max_out";
		pp_ifb_name(port->ifname, ifb);
		fi = ifb_create(sk, ifb);
		err = fi < 0 ? fi : 0;
		if (!err)
			err = htb_root(sk, fi, TAP_MAJOR, 1);
		if (!err)
			err = htb_class(sk, fi, TC_HANDLE(TAP_MAJOR, 0), TC_HANDLE(TAP_MAJOR, 1), p->max_out, p->max_out,
					burst_of(p, p->max_out), 0);
		if (!err)
			err = redirect_ingress(sk, idx, fi, mi);
	}
	if (err) {
		cerr_set(e, CERR_INTERNAL, what, "tc on port %s: %s", port->ifname, nl_geterror(err));
		goto fail;
	}
	swnl_close(sk);
	return 0;
fail:
	remove_port(sk, port);
	swnl_close(sk);
	return -1;
}
