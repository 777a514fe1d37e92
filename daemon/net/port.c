/* port.c: a switch port: the VM NIC's persistent tap on the switch's bridge
 * with its policy (switch.h). */
#include "switch.h"

#include <errno.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <netlink/route/link.h>

#include "swnl.h"
#include "tapdev.h"

static void port_desc(const struct sw_def *sw, const char *tap, const char *mac,
		      struct portpol_port *pp)
{
	pp->sw = sw->name;
	pp->bridge = sw->bridge;
	pp->ifname = tap;
	pp->mac = mac;
	pp->uplink = sw->type == SW_EXTERNAL ? sw->uplink : "";
}

/* Attach tap to the bridge, bring it up and apply p. */
static int port_attach(struct nl_sock *sk, const struct sw_def *sw, const char *tap,
		       const char *mac, const struct port_policy *p, struct cerr *e)
{
	struct portpol_port pp;
	int br = swnl_index(sk, sw->bridge), idx = swnl_index(sk, tap), err;

	if (br <= 0)
		return cerr_set(e, CERR_UNAVAILABLE, "switch", "switch %s has no bridge %s on "
				"this host", sw->name, sw->bridge);
	if (idx <= 0)
		return cerr_set(e, CERR_INTERNAL, "", "tap %s is gone", tap);
	err = swnl_enslave(sk, br, idx);
	if (!err)
		err = swnl_set_up(sk, idx);
	if (err)
		return cerr_set(e, CERR_INTERNAL, "", "cannot attach tap %s to bridge %s: %s", tap,
				sw->bridge, nl_geterror(err));
	port_desc(sw, tap, mac, &pp);
	return portpol_apply(&pp, p, e);
}

/* Whether interface name is a tun/tap device (its sysfs has tun_flags):
 * another kind of interface of a port's name is not ours to delete. */
static bool port_is_tun(const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", name);
	return access(path, F_OK) == 0;
}

/* Queue q of tap (queues > 1: a multi-queue tap, each queue its own fd). */
static int port_queue(const char *tap, unsigned queues, char *err, size_t len)
{
	return queues > 1 ? tapdev_open_queue(tap, err, len) : tapdev_open(tap, err, len);
}

int port_open(const struct sw_def *sw, const char *tap, const char *mac,
	      const struct port_policy *p, unsigned queues, int *fds, struct cerr *e)
{
	struct nl_sock *sk = swnl_open(e);
	char err[256];
	bool existed;
	unsigned q = 0;
	int one = 1;

	if (!sk)
		return -1;
	if (!queues)
		queues = 1;
	existed = swnl_index(sk, tap) > 0;
	fds[0] = port_queue(tap, queues, err, sizeof(err));
	if (fds[0] == -EINVAL && existed && port_is_tun(tap)) {
		/* A tap left behind (cellad killed while the VM stopped) in the
		 * other queue mode: TUNSETIFF cannot change it; make it anew. */
		swnl_delete(sk, tap);
		existed = false;
		fds[0] = port_queue(tap, queues, err, sizeof(err));
	}
	if (fds[0] < 0) {
		swnl_close(sk);
		return cerr_set(e, CERR_INTERNAL, "", "switch %s: %s", sw->name, err);
	}
	q = 1;
	/* Persistent: the port (and its rules) stays while the worker runs on
	 * without cellad, and goes only when cellad removes it. */
	if (ioctl(fds[0], TUNSETPERSIST, one) < 0) {
		cerr_set(e, CERR_INTERNAL, "", "tap %s: TUNSETPERSIST: %s", tap, strerror(errno));
		goto fail;
	}
	for (; q < queues; q++) {
		fds[q] = tapdev_open_queue(tap, err, sizeof(err));
		if (fds[q] < 0) {
			cerr_set(e, CERR_INTERNAL, "", "switch %s: queue %u: %s", sw->name, q, err);
			goto fail;
		}
	}
	if (port_attach(sk, sw, tap, mac, p, e))
		goto fail;
	swnl_close(sk);
	return 0;
fail:
	if (!existed) {
		struct portpol_port pp;

		port_desc(sw, tap, mac, &pp);
		portpol_remove(&pp);
		swnl_delete(sk, tap);
	}
	while (q--)
		close(fds[q]);
	swnl_close(sk);
	return -1;
}

int port_reattach(const struct sw_def *sw, const char *tap, const char *mac,
		  const struct port_policy *p, struct cerr *e)
{
	struct nl_sock *sk = swnl_open(e);
	int ret;

	if (!sk)
		return -1;
	ret = port_attach(sk, sw, tap, mac, p, e);
	swnl_close(sk);
	return ret;
}

int port_set_policy(const struct sw_def *sw, const char *tap, const char *mac,
		    const struct port_policy *p, struct cerr *e)
{
	struct portpol_port pp;

	port_desc(sw, tap, mac, &pp);
	return portpol_apply(&pp, p, e);
}

void port_remove(const struct sw_def *sw, const char *tap, const char *mac)
{
	struct portpol_port pp;
	struct cerr e;
	struct nl_sock *sk;

	port_desc(sw, tap, mac, &pp);
	portpol_remove(&pp);
	sk = swnl_open(&e);
	if (!sk)
		return;
	swnl_delete(sk, tap);
	swnl_close(sk);
}

json_t *port_counters(const struct sw_def *sw, const char *tap, const char *mac)
{
	static const struct { const char *name; rtnl_link_stat_id_t id; } stats[] = {
		{ "tap_rx_packets", RTNL_LINK_RX_PACKETS }, { "tap_tx_packets", RTNL_LINK_TX_PACKETS },
		{ "tap_rx_bytes", RTNL_LINK_RX_BYTES }, { "tap_tx_bytes", RTNL_LINK_TX_BYTES },
		{ "tap_rx_dropped", RTNL_LINK_RX_DROPPED }, { "tap_tx_dropped", RTNL_LINK_TX_DROPPED },
		{ "tap_rx_errors", RTNL_LINK_RX_ERRORS }, { "tap_tx_errors", RTNL_LINK_TX_ERRORS },
	};
	struct portpol_port pp;
	struct rtnl_link *l = NULL;
	struct nl_sock *sk;
	struct cerr e;
	json_t *o;

	sk = swnl_open(&e);
	if (!sk)
		return NULL;
	if (rtnl_link_get_kernel(sk, 0, tap, &l)) {
		swnl_close(sk);
		return NULL;
	}
	port_desc(sw, tap, mac, &pp);
	o = portpol_counters(&pp);
	if (!o)
		o = json_object();
	for (size_t i = 0; i < sizeof(stats) / sizeof(stats[0]); i++)
		json_object_set_new(o, stats[i].name,
				    json_integer((json_int_t)rtnl_link_get_stat(l, stats[i].id)));
	rtnl_link_put(l);
	swnl_close(sk);
	return o;
}
