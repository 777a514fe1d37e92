/* etcd_stats.c: counting an etcd client's requests (etcd_stats.h). */
#include "etcd_stats.h"

#include <string.h>
#include <time.h>

static const struct {
	const char *path;
	enum etcd_req_kind kind;
	const char *name;
} kinds[] = {
	{ "/v3/kv/range", ETCD_REQ_RANGE, "range" },
	{ "/v3/kv/put", ETCD_REQ_PUT, "put" },
	{ "/v3/kv/deleterange", ETCD_REQ_DELETE, "delete" },
	{ "/v3/kv/txn", ETCD_REQ_TXN, "txn" },
	{ "/v3/lease/grant", ETCD_REQ_LEASE_GRANT, "lease-grant" },
	{ "/v3/lease/keepalive", ETCD_REQ_LEASE_KEEPALIVE, "lease-keepalive" },
	{ "/v3/lease/revoke", ETCD_REQ_LEASE_REVOKE, "lease-revoke" },
};

enum etcd_req_kind etcd_req_kind_of(const char *path)
{
	for (size_t i = 0; path && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(path, kinds[i].path))
			return kinds[i].kind;
	return ETCD_REQ_OTHER;
}

const char *etcd_req_kind_name(enum etcd_req_kind k)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kinds[i].kind == k)
			return kinds[i].name;
	return "other";
}

static uint64_t boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void etcd_stats_count(struct etcd_stats *st, const char *path, int ret, bool unreachable)
{
	enum etcd_req_kind k = etcd_req_kind_of(path);

	if (!st)
		return;
	atomic_fetch_add(&st->requests[k], 1);
	if (ret)
		atomic_fetch_add(&st->errors[k], 1);
	if (unreachable && !atomic_exchange(&st->unreachable, 1))
		atomic_store(&st->away_since_ms, boot_ms());
	else if (!unreachable && atomic_exchange(&st->unreachable, 0))
		atomic_store(&st->away_since_ms, 0);
}

bool etcd_stats_reachable(struct etcd_stats *st)
{
	return !st || !atomic_load(&st->unreachable);
}
