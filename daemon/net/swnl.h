/* swnl.h: the few netlink (libnl-route-3) steps the switch layer repeats. */
#pragma once
#include <netlink/netlink.h>

#include "cerr.h"

/* A NETLINK_ROUTE socket, or NULL with e filled. */
struct nl_sock *swnl_open(struct cerr *e);
void swnl_close(struct nl_sock *sk);
/* The ifindex of interface name, or 0 when there is none. */
int swnl_index(struct nl_sock *sk, const char *name);
/* Set IFF_UP on ifindex idx: 0 or a negative libnl error. */
int swnl_set_up(struct nl_sock *sk, int idx);
/* Delete interface name: 0, or a negative libnl error (none: 0). */
int swnl_delete(struct nl_sock *sk, const char *name);
/* Attach ifindex port to bridge ifindex br: 0 or a negative libnl error. */
int swnl_enslave(struct nl_sock *sk, int br, int port);
