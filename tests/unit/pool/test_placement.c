/* test_placement.c: daemon/pool/placement.c: the choice by free memory and
 * CPU, ties by name, the --host override, anti-affinity (soft and hard),
 * host states, storage, overcommit and vCPU ratios, typed reasons per host,
 * and the HA batch by priority with capacity running out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "placement.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const nfs[] = { "nfs1" };
static const char *const nfs_local[] = { "nfs1", "local-b" };

static struct place_host mkhost(const char *name, uint64_t mem, uint64_t committed, uint32_t cpus,
				uint32_t load)
{
	return (struct place_host){ .name = name, .state = POOL_HOST_UP, .memory_mib = mem,
				    .memory_committed_mib = committed, .cpus = cpus,
				    .cpu_load_mcpu = load, .storage = nfs, .nr_storage = 1 };
}

static struct place_vm mkvm(const char *name, uint64_t mem, uint32_t vcpus)
{
	return (struct place_vm){ .name = name, .memory_mib = mem, .vcpus = vcpus };
}

static int place(struct place_host *h, size_t n, const struct place_vm *vm, struct place_verdict *v,
		 struct place_result *r)
{
	int ret = place_vm(h, n, vm, NULL, v, r);

	assert_int_equal(ret, r->host);
	assert_true(strlen(r->reason) > 0);
	return ret;
}

static void test_free_memory(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 16384, 12288, 8, 1000),
		mkhost("b", 16384, 4096, 8, 1000),
		mkhost("c", 16384, 8192, 8, 1000),
	};
	struct place_vm vm = mkvm("web1", 2048, 2);
	struct place_verdict v[3];
	struct place_result r;

	(void)unused;
	assert_int_equal(place(h, 3, &vm, v, &r), 1);
	assert_int_equal(r.eligible, 3);
	assert_false(r.affinity_broken);
	assert_non_null(strstr(r.reason, "placed web1"));
	assert_non_null(strstr(r.reason, " on b"));
	assert_non_null(strstr(r.reason, "10240 MiB free after placing"));
	for (int i = 0; i < 3; i++)
		assert_int_equal(v[i].why, PLACE_OK);
	assert_true(v[1].score > v[2].score && v[2].score > v[0].score);
	/* Relative headroom: a large host half full beats a small one 3/4 full. */
	struct place_host g[] = { mkhost("small", 8192, 6144, 8, 0), mkhost("large", 65536, 32768, 8, 0) };

	assert_int_equal(place(g, 2, &vm, NULL, &r), 1);
}

static void test_cpu(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 16384, 4096, 8, 6000),
		mkhost("b", 16384, 4096, 8, 1000),
		mkhost("c", 16384, 4096, 16, 6000), /* 6 of 16 CPUs busy: more headroom than a */
	};
	struct place_vm vm = mkvm("db", 1024, 2);
	struct place_result r;

	(void)unused;
	assert_int_equal(place(h, 3, &vm, NULL, &r), 1);
	h[1].cpu_load_mcpu = 7900;
	assert_int_equal(place(h, 3, &vm, NULL, &r), 2);
	assert_non_null(strstr(r.reason, "CPUs idle"));
}

static void test_ties_by_name(void **unused)
{
	struct place_host h[] = {
		mkhost("host-c", 16384, 0, 8, 0),
		mkhost("host-a", 16384, 0, 8, 0),
		mkhost("host-b", 16384, 0, 8, 0),
	};
	struct place_vm vm = mkvm("x", 1024, 1);
	struct place_result r;

	(void)unused;
	assert_int_equal(place(h, 3, &vm, NULL, &r), 1);
	assert_non_null(strstr(r.reason, "tied with 2 others"));
}

/* Any order of the same hosts gives the same host: several cellads agree. */
static void test_order_independent(void **unused)
{
	char names[24][8];
	struct place_host h[24];
	unsigned seed = 12345;

	(void)unused;
	for (int i = 0; i < 24; i++) {
		snprintf(names[i], sizeof(names[i]), "h%02d", i);
		/* Several hosts share each load: ties are common. */
		h[i] = mkhost(names[i], 32768, (uint64_t)(i % 4) * 4096, 16, (uint32_t)(i % 3) * 2000);
	}
	for (int round = 0; round < 200; round++) {
		struct place_vm vm = mkvm("v", 512 + (uint64_t)(round % 7) * 1024, 1 + round % 4);
		struct place_result r;
		const char *want;

		vm.cpu_mcpu = (uint32_t)(round % 5) * 300;
		assert_true(place(h, 24, &vm, NULL, &r) >= 0);
		want = h[r.host].name;
		for (int k = 23; k > 0; k--) { /* shuffle */
			int j = (int)((seed = seed * 1103515245 + 12345) >> 16) % (k + 1);
			struct place_host t = h[k];

			h[k] = h[j];
			h[j] = t;
		}
		assert_true(place(h, 24, &vm, NULL, &r) >= 0);
		assert_string_equal(h[r.host].name, want);
		h[r.host].memory_committed_mib += 256; /* move the pool on a little */
	}
}

static void test_override(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 16384, 0, 8, 0),
		mkhost("b", 16384, 8192, 8, 0),
		mkhost("c", 16384, 15360, 8, 0),
	};
	struct place_vm vm = mkvm("pinned", 2048, 2);
	struct place_verdict v[3];
	struct place_result r;

	(void)unused;
	vm.host = "b";
	assert_int_equal(place(h, 3, &vm, v, &r), 1);
	assert_non_null(strstr(r.reason, "as requested"));
	assert_int_equal(v[0].why, PLACE_NOT_REQUESTED);
	assert_int_equal(v[1].why, PLACE_OK);
	/* The requested host lacks memory: refused, saying why. */
	vm.host = "c";
	assert_int_equal(place(h, 3, &vm, v, &r), -1);
	assert_int_equal(v[2].why, PLACE_NO_MEMORY);
	assert_non_null(strstr(r.reason, "cannot place pinned"));
	assert_non_null(strstr(r.reason, "on c as requested: c: 1024 MiB free, 2048 MiB needed"));
	/* In maintenance. */
	h[1].state = POOL_HOST_MAINTENANCE;
	vm.host = "b";
	assert_int_equal(place(h, 3, &vm, v, &r), -1);
	assert_int_equal(v[1].why, PLACE_MAINTENANCE);
	assert_non_null(strstr(r.reason, "b: maintenance"));
	/* No such host. */
	vm.host = "zz";
	assert_int_equal(place(h, 3, &vm, v, &r), -1);
	assert_true(r.unknown_host);
	assert_non_null(strstr(r.reason, "no host named zz"));
}

static void test_states_excluded(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 65536, 0, 8, 0),
		mkhost("b", 65536, 0, 8, 0),
		mkhost("c", 65536, 0, 8, 0),
		mkhost("d", 8192, 4096, 8, 0),
	};
	struct place_vm vm = mkvm("v", 1024, 1);
	struct place_verdict v[4];
	struct place_result r;
	char line[200];

	(void)unused;
	h[0].state = POOL_HOST_MAINTENANCE;
	h[1].state = POOL_HOST_DOWN;
	h[2].state = POOL_HOST_ISOLATED;
	assert_int_equal(place(h, 4, &vm, v, &r), 3);
	assert_int_equal(v[0].why, PLACE_MAINTENANCE);
	assert_int_equal(v[1].why, PLACE_DOWN);
	assert_int_equal(v[2].why, PLACE_ISOLATED);
	assert_int_equal(r.eligible, 1);
	h[3].state = POOL_HOST_DOWN;
	assert_int_equal(place(h, 4, &vm, v, &r), -1);
	assert_non_null(strstr(r.reason, "no host can take v (1024 MiB, 1 vCPU): a: maintenance; b: "
				 "down; c: isolated; d: down"));
	place_verdict_format(&h[2], &vm, &v[2], line, sizeof(line));
	assert_string_equal(line, "c: isolated");
	assert_string_equal(place_why_name(PLACE_ISOLATED), "isolated");
	assert_string_equal(place_why_name(PLACE_WHY_COUNT), "?");
	assert_string_equal(pool_host_state_name(POOL_HOST_MAINTENANCE), "maintenance");
	/* No host at all. */
	assert_int_equal(place(h, 0, &vm, NULL, &r), -1);
	assert_non_null(strstr(r.reason, "the pool has no host"));
}

static void test_storage(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 65536, 0, 8, 0),
		mkhost("b", 16384, 8192, 8, 0),
	};
	struct place_vm vm = mkvm("v", 1024, 1);
	struct place_verdict v[2];
	struct place_result r;

	(void)unused;
	h[1].storage = nfs_local;
	h[1].nr_storage = 2;
	vm.storage = nfs_local; /* nfs1 and local-b: only b has both */
	vm.nr_storage = 2;
	assert_int_equal(place(h, 2, &vm, v, &r), 1);
	assert_int_equal(v[0].why, PLACE_NO_STORAGE);
	assert_string_equal(v[0].missing_storage, "local-b");
	h[1].nr_storage = 1;
	assert_int_equal(place(h, 2, &vm, v, &r), -1);
	assert_non_null(strstr(r.reason, "a: storage local-b not mounted; b: storage local-b not mounted"));
	vm.nr_storage = 1; /* nfs1 only: both, a has more room */
	assert_int_equal(place(h, 2, &vm, v, &r), 0);
}

static void test_overcommit(void **unused)
{
	struct place_host h[] = { mkhost("a", 16384, 16384, 8, 0) };
	struct place_vm vm = mkvm("v", 4096, 2);
	struct place_verdict v[1];
	struct place_result r;

	(void)unused;
	assert_int_equal(place(h, 1, &vm, v, &r), -1);
	assert_int_equal(v[0].why, PLACE_NO_MEMORY);
	assert_non_null(strstr(r.reason, "a: 0 MiB free, 4096 MiB needed"));
	h[0].memory_overcommit_pct = 150; /* 24576 MiB may be committed */
	assert_int_equal(place_host_memory_limit(&h[0]), 24576);
	assert_int_equal(place(h, 1, &vm, v, &r), 0);
	assert_int_equal(v[0].memory_free_mib, 8192);
	vm.memory_mib = 8192; /* exactly what is left */
	assert_int_equal(place(h, 1, &vm, v, &r), 0);
	vm.memory_mib = 8193;
	assert_int_equal(place(h, 1, &vm, v, &r), -1);

	/* vCPUs: never more than the host's CPUs; under the ratio when set. */
	vm.memory_mib = 1024;
	vm.vcpus = 9;
	assert_int_equal(place(h, 1, &vm, v, &r), -1);
	assert_int_equal(v[0].why, PLACE_NO_CPU);
	assert_non_null(strstr(r.reason, "a: 8 CPUs, 9 vCPUs needed"));
	vm.vcpus = 4;
	h[0].vcpu_ratio_pct = 200; /* 16 vCPUs */
	h[0].vcpus_committed = 13;
	assert_int_equal(place(h, 1, &vm, v, &r), -1);
	assert_int_equal(v[0].why, PLACE_NO_CPU);
	assert_int_equal(v[0].vcpus_free, 3);
	assert_non_null(strstr(r.reason, "3 vCPUs free under its ratio, 4 needed"));
	h[0].vcpus_committed = 12;
	assert_int_equal(place(h, 1, &vm, v, &r), 0);
}

static void test_anti_affinity(void **unused)
{
	const struct place_vm on_a[] = { { .name = "web1", .memory_mib = 1024, .group = "web" } };
	const struct place_vm on_b[] = { { .name = "web2", .memory_mib = 1024, .group = "web" },
					 { .name = "db1", .memory_mib = 1024, .group = "db" } };
	struct place_host h[] = {
		mkhost("a", 65536, 1024, 8, 0),
		mkhost("b", 65536, 2048, 8, 0),
		mkhost("c", 16384, 12288, 8, 4000), /* the least room, but no member of web */
	};
	struct place_vm vm = mkvm("web3", 1024, 1);
	struct place_verdict v[3];
	struct place_result r;

	(void)unused;
	h[0].vms = on_a;
	h[0].nr_vms = 1;
	h[1].vms = on_b;
	h[1].nr_vms = 2;
	vm.group = "web";
	assert_int_equal(place(h, 3, &vm, v, &r), 2);
	assert_false(r.affinity_broken);
	assert_int_equal(v[0].group_members, 1);
	assert_int_equal(v[1].group_members, 1);
	assert_non_null(strstr(r.reason, "no other member of anti-affinity group web there"));
	/* The same name is the VM itself, not a member (a VM already placed). */
	vm.name = "web1";
	place_judge(&h[0], 0, &vm, NULL, &v[0]);
	assert_int_equal(v[0].group_members, 0);
	vm.name = "web3";

	/* Soft: every host has a member: the fewest wins, and it is said. */
	h[2].state = POOL_HOST_MAINTENANCE;
	assert_int_equal(place(h, 3, &vm, v, &r), 0);
	assert_true(r.affinity_broken);
	assert_non_null(strstr(r.reason, "soft anti-affinity group web not honoured"));
	/* Hard: refused, a typed reason per host. */
	vm.affinity = PLACE_AA_HARD;
	assert_int_equal(place(h, 3, &vm, v, &r), -1);
	assert_int_equal(v[0].why, PLACE_ANTI_AFFINITY);
	assert_int_equal(v[1].why, PLACE_ANTI_AFFINITY);
	assert_int_equal(v[2].why, PLACE_MAINTENANCE);
	assert_non_null(strstr(r.reason, "a: runs 1 member of anti-affinity group web"));
	h[2].state = POOL_HOST_UP;
	assert_int_equal(place(h, 3, &vm, v, &r), 2);
	/* Soft with --host onto a member: allowed, and said; hard: refused. */
	vm.affinity = PLACE_AA_SOFT;
	vm.host = "b";
	assert_int_equal(place(h, 3, &vm, v, &r), 1);
	assert_true(r.affinity_broken);
	assert_non_null(strstr(r.reason, "b runs 1 member"));
	vm.affinity = PLACE_AA_HARD;
	assert_int_equal(place(h, 3, &vm, v, &r), -1);
	/* No group: members are not counted. */
	vm = mkvm("plain", 1024, 1);
	place_judge(&h[1], 1, &vm, NULL, &v[1]);
	assert_int_equal(v[1].group_members, 0);
}

static void test_extra_load(void **unused)
{
	struct place_host h[] = { mkhost("a", 16384, 0, 8, 0), mkhost("b", 16384, 1024, 8, 0) };
	uint64_t mem[2] = { 4096, 0 };
	uint32_t vcpus[2] = { 0 }, mcpu[2] = { 0 };
	struct place_vm web = { .name = "w0", .memory_mib = 512, .group = "g" };
	const struct place_vm *placed[] = { &web };
	size_t where[] = { 1 };
	struct place_extra extra = { .memory_mib = mem, .vcpus = vcpus, .cpu_mcpu = mcpu,
				     .vms = placed, .vm_host = where, .nr_vms = 1 };
	struct place_vm vm = mkvm("w1", 1024, 1);
	struct place_result r;

	(void)unused;
	assert_int_equal(place_vm(h, 2, &vm, &extra, NULL, &r), 1); /* a carries 4096 more */
	vm.group = "g";
	assert_int_equal(place_vm(h, 2, &vm, &extra, NULL, &r), 0); /* w0 went to b */
}

static void test_reason_bounded(void **unused)
{
	static char names[300][16];
	static struct place_host h[300];
	struct place_vm vm = mkvm("big", 1 << 20, 1);
	struct place_result r;

	(void)unused;
	for (int i = 0; i < 300; i++) {
		snprintf(names[i], sizeof(names[i]), "host-%03d", i);
		h[i] = mkhost(names[i], 16384, 0, 8, 0);
	}
	assert_int_equal(place_vm(h, 300, &vm, NULL, NULL, &r), -1); /* above 64: allocated */
	assert_true(strlen(r.reason) < sizeof(r.reason));
	assert_string_equal(r.reason + strlen(r.reason) - 3, "...");
}

/* HA restarts: by priority, capacity consumed; the rest refused with reasons. */
static void test_batch_priority(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 8192, 0, 8, 0),
		mkhost("b", 8192, 0, 8, 0),
		mkhost("c", 8192, 0, 8, 0),
	};
	static const char *names[10] = { "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9" };
	struct place_vm vms[10];
	struct place_result res[10];
	size_t order[10];
	uint64_t used[3] = { 0 };

	(void)unused;
	for (int i = 0; i < 10; i++) {
		vms[i] = mkvm(names[i], 3072, 1); /* two fit on a host: 6 of 10 */
		vms[i].priority = i % 5;          /* v4, v9 first; v0, v5 last */
	}
	assert_int_equal(place_batch(h, 3, vms, 10, res, order), 6);
	/* Order: priority down, then name. */
	static const size_t want[10] = { 4, 9, 3, 8, 2, 7, 1, 6, 0, 5 };

	for (int k = 0; k < 10; k++)
		assert_int_equal(order[k], want[k]);
	for (int i = 0; i < 10; i++) {
		if (vms[i].priority >= 2) {
			assert_true(res[i].host >= 0);
			used[res[i].host] += vms[i].memory_mib;
		} else {
			assert_int_equal(res[i].host, -1);
			assert_non_null(strstr(res[i].reason, "2048 MiB free, 3072 MiB needed"));
		}
	}
	for (int k = 0; k < 3; k++)
		assert_int_equal(used[k], 6144);
	/* The first three went to a, b, c in turn (each placement fills one). */
	assert_int_equal(res[4].host, 0);
	assert_int_equal(res[9].host, 1);
	assert_int_equal(res[3].host, 2);
}

static void test_batch_groups_and_size(void **unused)
{
	struct place_host h[] = {
		mkhost("a", 65536, 0, 32, 0),
		mkhost("b", 65536, 0, 32, 0),
		mkhost("c", 65536, 0, 32, 0),
	};
	struct place_vm vms[4] = { mkvm("g1", 1024, 1), mkvm("g2", 1024, 1), mkvm("g3", 1024, 1),
				   mkvm("g4", 1024, 1) };
	struct place_result res[4];
	int hosts_used = 0;

	(void)unused;
	/* Load makes a the best host by far, but the group spreads. */
	h[1].memory_committed_mib = 30000;
	h[2].memory_committed_mib = 30000;
	for (int i = 0; i < 4; i++)
		vms[i].group = "ha";
	assert_int_equal(place_batch(h, 3, vms, 4, res, NULL), 4);
	for (int i = 0; i < 3; i++)
		hosts_used |= 1 << res[i].host;
	assert_int_equal(hosts_used, 7);
	assert_false(res[0].affinity_broken || res[1].affinity_broken || res[2].affinity_broken);
	assert_true(res[3].affinity_broken); /* the fourth must share */
	/* Same priority: the larger VM first. */
	vms[3].memory_mib = 2048;
	size_t order[4];

	assert_int_equal(place_batch(h, 3, vms, 4, res, order), 4);
	assert_int_equal(order[0], 3);
	/* Empty batch. */
	assert_int_equal(place_batch(h, 3, vms, 0, res, order), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_memory),
		cmocka_unit_test(test_cpu),
		cmocka_unit_test(test_ties_by_name),
		cmocka_unit_test(test_order_independent),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_states_excluded),
		cmocka_unit_test(test_storage),
		cmocka_unit_test(test_overcommit),
		cmocka_unit_test(test_anti_affinity),
		cmocka_unit_test(test_extra_load),
		cmocka_unit_test(test_reason_bounded),
		cmocka_unit_test(test_batch_priority),
		cmocka_unit_test(test_batch_groups_and_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
