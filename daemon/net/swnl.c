/* swnl.c: netlink helpers of the switch layer (swnl.h). */
#include "swnl.h"

#include <net/if.h>
#include <netlink/route/link.h>

struct nl_sock *swnl_open(struct cerr *e)
{
	struct nl_sock *sk = nl_socket_alloc();
	int err;

	if (!sk) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		return NULL;
	}
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err) {
		cerr_set(e, CERR_INTERNAL, "", "cannot open a netlink socket: %s", nl_geterror(err));
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

void swnl_close(struct nl_sock *sk)
{
	nl_socket_free(sk); /* closes it */
}

int swnl_index(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	int idx;

	if (rtnl_link_get_kernel(sk, 0, name, &l))
		return 0;
	idx = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	return idx;
}

int swnl_set_up(struct nl_sock *sk, int idx)
{
	struct rtnl_link *orig = rtnl_link_alloc(), *change = rtnl_link_alloc();
	int err = -NLE_NOMEM;

	if (orig && change) {
		rtnl_link_set_ifindex(orig, idx);
		rtnl_link_set_flags(change, IFF_UP);
		err = rtnl_link_change(sk, orig, change, 0);
	}
	if (orig)
		rtnl_link_put(orig);
	if (change)
		rtnl_link_put(change);
	return err;
}

int swnl_delete(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = rtnl_link_alloc();
	int err;

	if (!l)
		return -NLE_NOMEM;
	rtnl_link_set_name(l, name);
	err = rtnl_link_delete(sk, l);
	rtnl_link_put(l);
	return err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV ? 0 : err;
}

int swnl_enslave(struct nl_sock *sk, int br, int port)
{
	return rtnl_link_enslave_ifindex(sk, br, port);
}
