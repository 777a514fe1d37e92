/* test_balance.c: daemon/pool/balance.c: the balance planner converges,
 * keeps to its cap and threshold, never moves a VM twice, proposes nothing
 * once its plan is carried out (no ping-pong), and keeps placement's rules
 * (anti-affinity, maintenance, storage, memory); the evacuation plan for
 * maintenance mode comes in ordered batches. A randomized pool checks the
 * invariants on many plans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>

#include <cmocka.h>

#include "balance.h"

#define MAXH 16
#define MAXV 128

static const char *const nfs[] = { "nfs1" };

/* A pool as the tests keep it: VMs with their host; place_host records are
 * built from it (committed memory, CPU load and vCPUs summed over VMs). */
struct model {
	size_t nh, nv;
	struct place_host h[MAXH];
	char hname[MAXH][16];
	struct place_vm v[MAXV];
	char vname[MAXV][16];
	size_t where[MAXV];
	struct place_vm byhost[MAXH][MAXV];
};

static void model_host(struct model *m, uint64_t mem, uint32_t cpus)
{
	size_t i = m->nh++;

	snprintf(m->hname[i], sizeof(m->hname[i]), "h%02zu", i);
	m->h[i] = (struct place_host){ .name = m->hname[i], .state = POOL_HOST_UP, .memory_mib = mem,
				       .cpus = cpus, .storage = nfs, .nr_storage = 1 };
}

static struct place_vm *model_vm(struct model *m, size_t host, uint64_t mem, uint32_t mcpu,
				 const char *group)
{
	size_t i = m->nv++;

	snprintf(m->vname[i], sizeof(m->vname[i]), "vm%03zu", i);
	m->v[i] = (struct place_vm){ .name = m->vname[i], .memory_mib = mem, .vcpus = 1,
				     .cpu_mcpu = mcpu, .group = group };
	m->where[i] = host;
	return &m->v[i];
}

/* Rebuild the hosts' records from the VMs. */
static void model_build(struct model *m)
{
	for (size_t h = 0; h < m->nh; h++) {
		m->h[h].memory_committed_mib = 0;
		m->h[h].cpu_load_mcpu = 0;
		m->h[h].vcpus_committed = 0;
		m->h[h].nr_vms = 0;
		m->h[h].vms = m->byhost[h];
	}
	for (size_t i = 0; i < m->nv; i++) {
		struct place_host *h = &m->h[m->where[i]];

		m->byhost[m->where[i]][h->nr_vms++] = m->v[i];
		h->memory_committed_mib += m->v[i].memory_mib;
		h->cpu_load_mcpu += m->v[i].cpu_mcpu;
		h->vcpus_committed += m->v[i].vcpus;
	}
}

static size_t vm_index(const struct model *m, const char *name)
{
	for (size_t i = 0; i < m->nv; i++)
		if (strcmp(m->v[i].name, name) == 0)
			return i;
	fail_msg("no VM %s", name);
	return 0;
}

static size_t members(const struct model *m, size_t host, const char *group, const char *except)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nv; i++)
		n += m->where[i] == host && m->v[i].group && group && strcmp(m->v[i].group, group) == 0 &&
		     strcmp(m->v[i].name, except) != 0;
	return n;
}

static bool mounts(const struct place_host *h, const char *s)
{
	for (size_t i = 0; i < h->nr_storage; i++)
		if (strcmp(h->storage[i], s) == 0)
			return true;
	return false;
}

/* Carry out a plan on the model, move by move, checking each against the
 * rules as the pool stands at that move; rebuilds the records. */
static void model_apply(struct model *m, const struct balance_plan *p, bool evacuation)
{
	bool moved[MAXV] = { false };

	for (size_t k = 0; k < p->nr_moves; k++) {
		const struct balance_move *mv = &p->moves[k];
		size_t i = vm_index(m, m->h[mv->from].vms[mv->vm].name);
		const struct place_vm *vm = &m->v[i];
		uint64_t committed = 0;

		assert_false(moved[i]);            /* never twice */
		moved[i] = true;
		assert_int_equal(m->where[i], mv->from);
		assert_int_not_equal(mv->to, mv->from);
		assert_int_equal(m->h[mv->to].state, POOL_HOST_UP);
		if (!evacuation)
			assert_int_equal(m->h[mv->from].state, POOL_HOST_UP);
		for (size_t s = 0; s < vm->nr_storage; s++)
			assert_true(mounts(&m->h[mv->to], vm->storage[s]));
		if (!evacuation && vm->group)
			assert_int_equal(members(m, mv->to, vm->group, vm->name), 0);
		m->where[i] = mv->to;
		for (size_t j = 0; j < m->nv; j++)
			committed += m->where[j] == mv->to ? m->v[j].memory_mib : 0;
		assert_true(committed <= place_host_memory_limit(&m->h[mv->to]));
		assert_true(strlen(mv->reason) > 0);
		if (k && !evacuation) /* each move lowers the imbalance */
			assert_true(mv->imbalance_after_ppm <= p->moves[k - 1].imbalance_after_ppm);
		if (evacuation && k)
			assert_true(mv->batch >= p->moves[k - 1].batch);
	}
	model_build(m);
	assert_int_equal(balance_imbalance(m->h, m->nh), p->imbalance_after_ppm);
}

static void test_converges(void **unused)
{
	static struct model m;
	struct balance_plan p;
	struct balance_settings s = { .max_moves = 50 };

	(void)unused;
	memset(&m, 0, sizeof(m));
	for (int h = 0; h < 4; h++)
		model_host(&m, 32768, 8);
	for (int i = 0; i < 12; i++) /* everything on h00 */
		model_vm(&m, 0, 2048, 500, NULL);
	model_build(&m);
	assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
	assert_true(p.imbalance_before_ppm > 200000);
	assert_true(p.imbalance_after_ppm <= BALANCE_THRESHOLD_PPM);
	assert_true(p.nr_moves >= 8 && p.nr_moves <= 9); /* 3 VMs per host, or 4-3-3-2 */
	assert_true(p.memory_spread_after_ppm < p.memory_spread_before_ppm);
	assert_true(p.cpu_spread_after_ppm < p.cpu_spread_before_ppm);
	assert_non_null(strstr(p.moves[0].reason, "move vm000 (2048 MiB, 0.50 CPUs in use) from h00 "
						 "(memory 75%, CPU 75%) to h01 (memory 0%, CPU 0%)"));
	assert_non_null(strstr(p.summary, " moves: imbalance "));
	model_apply(&m, &p, false);
	for (size_t h = 0; h < 4; h++)
		assert_true(m.h[h].nr_vms >= 2 && m.h[h].nr_vms <= 4);
	balance_plan_free(&p);

	/* No ping-pong: the plan carried out, a new plan moves nothing. */
	assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
	assert_int_equal(p.nr_moves, 0);
	assert_non_null(strstr(p.summary, "balanced"));
	balance_plan_free(&p);
}

static void test_cap_and_rounds(void **unused)
{
	static struct model m;
	struct balance_plan p;
	struct balance_settings s = { .max_moves = 2 };
	int rounds = 0;
	uint32_t last;

	(void)unused;
	memset(&m, 0, sizeof(m));
	for (int h = 0; h < 5; h++)
		model_host(&m, 65536, 16);
	for (int i = 0; i < 20; i++)
		model_vm(&m, (size_t)(i % 2), 1024 + (uint64_t)(i % 3) * 1024, 200 + (uint32_t)i * 50, NULL);
	model_build(&m);
	last = balance_imbalance(m.h, m.nh);
	/* Run after run, each within the cap, until nothing is proposed; the
	 * imbalance falls every run, so it ends (no cycle). */
	for (;;) {
		assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
		assert_true(p.nr_moves <= 2);
		if (p.nr_moves == 2)
			assert_non_null(strstr(p.summary, "cap on moves"));
		if (!p.nr_moves) {
			balance_plan_free(&p);
			break;
		}
		assert_int_equal(p.imbalance_before_ppm, last);
		assert_true(p.imbalance_after_ppm < last);
		model_apply(&m, &p, false);
		last = p.imbalance_after_ppm;
		balance_plan_free(&p);
		assert_true(++rounds < 20);
	}
	assert_true(rounds >= 3);
}

static void test_threshold_and_gain(void **unused)
{
	static struct model m;
	struct balance_plan p;

	(void)unused;
	memset(&m, 0, sizeof(m));
	model_host(&m, 32768, 8);
	model_host(&m, 32768, 8);
	for (int i = 0; i < 8; i++)
		model_vm(&m, 0, 4096, 1000, NULL);
	for (int i = 0; i < 7; i++)
		model_vm(&m, 1, 4096, 1000, NULL);
	model_build(&m);
	/* One VM of difference: 0.0625 in memory and CPU, above 0.05; moving one
	 * VM only mirrors it (no gain): nothing is proposed. */
	assert_int_equal(balance_plan(m.h, m.nh, NULL, &p), 0);
	assert_int_equal(p.imbalance_before_ppm, 62500);
	assert_int_equal(p.nr_moves, 0);
	assert_non_null(strstr(p.summary, "no move helps enough"));
	balance_plan_free(&p);

	/* 9 and 7 on larger hosts: 0.0625 again, and one move evens it out. */
	memset(&m, 0, sizeof(m));
	model_host(&m, 65536, 16);
	model_host(&m, 65536, 16);
	for (int i = 0; i < 16; i++)
		model_vm(&m, i < 9 ? 0 : 1, 4096, 1000, NULL);
	model_build(&m);
	struct balance_settings s = { .threshold_ppm = 100000 };

	assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0); /* below the threshold */
	assert_int_equal(p.imbalance_before_ppm, 62500);
	assert_int_equal(p.nr_moves, 0);
	assert_non_null(strstr(p.summary, "within the threshold 0.100"));
	balance_plan_free(&p);
	s = (struct balance_settings){ .min_gain_ppm = 130000 }; /* more than the gap, 0.125 */
	assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
	assert_int_equal(p.nr_moves, 0);
	balance_plan_free(&p);
	assert_int_equal(balance_plan(m.h, m.nh, NULL, &p), 0);
	assert_int_equal(p.nr_moves, 1);
	assert_int_equal(p.imbalance_after_ppm, 0);
	assert_non_null(strstr(p.summary, "1 move: imbalance 0.062 -> 0.000"));
	model_apply(&m, &p, false);
	balance_plan_free(&p);
}

static void test_rules(void **unused)
{
	static struct model m;
	static const char *const local0[] = { "local-h00" };
	struct balance_plan p;
	struct balance_settings s = { .max_moves = 50 };

	(void)unused;
	memset(&m, 0, sizeof(m));
	for (int h = 0; h < 4; h++)
		model_host(&m, 32768, 8);
	m.h[3].state = POOL_HOST_MAINTENANCE;
	/* h00 crowded: web group members, a VM on local storage, a large one. */
	model_vm(&m, 0, 4096, 1000, "web");
	model_vm(&m, 0, 4096, 1000, "web");
	model_vm(&m, 0, 4096, 1000, "web");
	struct place_vm *local = model_vm(&m, 0, 4096, 1000, NULL);

	local->storage = local0;
	local->nr_storage = 1;
	model_vm(&m, 0, 4096, 1000, NULL);
	model_vm(&m, 1, 4096, 1000, "web"); /* a web member already on h01 */
	model_vm(&m, 3, 2048, 500, NULL);   /* stays on the maintenance host */
	model_build(&m);
	assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
	assert_true(p.nr_moves > 0);
	for (size_t k = 0; k < p.nr_moves; k++) {
		const struct place_vm *vm = &m.h[p.moves[k].from].vms[p.moves[k].vm];

		assert_string_not_equal(vm->name, "vm003"); /* local storage */
		assert_int_not_equal(p.moves[k].to, 3);
		assert_int_not_equal(p.moves[k].from, 3);
	}
	model_apply(&m, &p, false);
	/* web: one member per host where possible; h01 had one: only h02 took one. */
	assert_int_equal(members(&m, 1, "web", ""), 1);
	assert_int_equal(members(&m, 2, "web", ""), 1);
	assert_int_equal(members(&m, 0, "web", ""), 2);
	balance_plan_free(&p);

	/* Memory limits: a full target is never used. */
	memset(&m, 0, sizeof(m));
	model_host(&m, 8192, 8);
	model_host(&m, 8192, 64);
	model_vm(&m, 0, 4096, 7000, NULL); /* h00's CPU is hot, h01 has 64 CPUs... */
	model_vm(&m, 1, 8192, 0, NULL);    /* ...but no memory left */
	model_build(&m);
	assert_int_equal(balance_plan(m.h, m.nh, NULL, &p), 0);
	assert_int_equal(p.nr_moves, 0);
	balance_plan_free(&p);
	/* Hosts that are not up count for nothing. */
	m.h[1].state = POOL_HOST_DOWN;
	assert_int_equal(balance_imbalance(m.h, m.nh), 0);
	assert_int_equal(balance_imbalance(m.h, 0), 0);
}

static void test_evacuate(void **unused)
{
	static struct model m;
	struct balance_plan p;
	struct balance_settings s = { .batch = 4 };

	(void)unused;
	memset(&m, 0, sizeof(m));
	for (int h = 0; h < 4; h++)
		model_host(&m, 32768, 16);
	m.h[2].state = POOL_HOST_DOWN;
	for (int i = 0; i < 10; i++) {
		struct place_vm *v = model_vm(&m, 0, 2048, 300, i < 2 ? "db" : NULL);

		v->priority = i == 7 ? 10 : 0;
		v->host = "h00"; /* started with --host: does not pin it */
	}
	model_vm(&m, 1, 2048, 300, "db");
	model_build(&m);
	assert_int_equal(balance_evacuate(m.h, m.nh, 0, &s, &p), 0);
	assert_int_equal(p.nr_moves, 10);
	assert_int_equal(p.nr_stuck, 0);
	assert_int_equal(p.nr_batches, 3);
	assert_int_equal(p.moves[0].vm, 7);          /* priority first */
	assert_int_equal(p.moves[3].batch, 0);
	assert_int_equal(p.moves[4].batch, 1);
	assert_int_equal(p.moves[9].batch, 2);
	assert_non_null(strstr(p.moves[0].reason, "evacuate h00 (maintenance): placed vm007"));
	assert_non_null(strstr(p.summary, "10 of 10 VMs in 3 batches of at most 4"));
	/* db members: vm000 and vm001 avoid h01 (vm010 is there) and each other
	 * as far as the soft rule can: h03 takes one, the other must share. */
	m.h[0].state = POOL_HOST_MAINTENANCE;
	model_apply(&m, &p, true);
	assert_int_equal(m.h[0].nr_vms, 0);
	assert_int_equal(m.h[2].nr_vms, 0);
	assert_true(members(&m, 3, "db", "") >= 1);
	balance_plan_free(&p);

	/* Not enough room: the rest is stuck, with reasons. */
	memset(&m, 0, sizeof(m));
	model_host(&m, 16384, 8);
	model_host(&m, 8192, 8);
	for (int i = 0; i < 6; i++)
		model_vm(&m, 0, 2048, 100, NULL);
	model_build(&m);
	assert_int_equal(balance_evacuate(m.h, m.nh, 0, NULL, &p), 0);
	assert_int_equal(p.nr_moves, 4);
	assert_int_equal(p.nr_stuck, 2);
	assert_int_equal(p.nr_batches, 1);
	assert_non_null(strstr(p.stuck[0].reason, "h00: maintenance; h01: 0 MiB free, 2048 MiB needed"));
	assert_non_null(strstr(p.summary, "some VMs have no host"));
	balance_plan_free(&p);
	assert_int_equal(balance_evacuate(m.h, m.nh, 2, NULL, &p), -EINVAL);
	/* An empty host: an empty plan. */
	memset(&m, 0, sizeof(m));
	model_host(&m, 8192, 8);
	model_host(&m, 8192, 8);
	model_build(&m);
	assert_int_equal(balance_evacuate(m.h, m.nh, 1, NULL, &p), 0);
	assert_int_equal(p.nr_moves, 0);
	assert_int_equal(p.nr_batches, 0);
	balance_plan_free(&p);
}

static int rnd(unsigned *seed, int n)
{
	*seed = *seed * 1103515245 + 12345;
	return (int)((*seed >> 16) % (unsigned)n);
}

/* Random pools: every plan keeps the rules, lowers the imbalance, and a
 * pool run to the end proposes nothing more. */
static void test_random_pools(void **unused)
{
	static struct model m;
	static const char *const groups[] = { NULL, NULL, "a", "b", "c" };
	static const char *const both[] = { "nfs1", "nfs2" };
	static const char *const nfs2[] = { "nfs2" };
	unsigned seed = 7;
	size_t total = 0, nonempty = 0;

#define RND(n) rnd(&seed, n)
	(void)unused;
	for (int round = 0; round < 60; round++) {
		struct balance_settings s = { .max_moves = (size_t)(1 + RND(10)) };
		struct balance_plan p;
		size_t moves;
		int runs = 0;

		memset(&m, 0, sizeof(m));
		int nh = 2 + RND(10);

		for (int h = 0; h < nh; h++) {
			uint64_t mem = (uint64_t)(16 + RND(3) * 16) * 1024;
			uint32_t cpus = (uint32_t)(8 << RND(3));

			model_host(&m, mem, cpus);
			if (RND(4) == 0) {
				m.h[h].storage = both;
				m.h[h].nr_storage = 2;
			}
			if (RND(8) == 0)
				m.h[h].state = (enum pool_host_state)(1 + RND(3));
		}
		int nv = RND(60);

		for (int i = 0; i < nv; i++) {
			size_t h = (size_t)RND(nh / 2 + 1);
			uint64_t mem = (uint64_t)(512 << RND(3));
			uint32_t mcpu = (uint32_t)RND(2000);
			const char *group = groups[RND(5)];
			struct place_vm *v = model_vm(&m, h, mem, mcpu, group);

			if (RND(6) == 0 && m.h[h].nr_storage == 2) {
				v->storage = nfs2;
				v->nr_storage = 1;
			}
			model_build(&m);
			if (m.h[h].memory_committed_mib > m.h[h].memory_mib) { /* keep records possible */
				m.nv--;
				model_build(&m);
			}
		}
		do {
			uint32_t before = balance_imbalance(m.h, m.nh);

			assert_int_equal(balance_plan(m.h, m.nh, &s, &p), 0);
			assert_int_equal(p.imbalance_before_ppm, before);
			assert_true(p.nr_moves <= s.max_moves);
			assert_true(p.imbalance_after_ppm <= before);
			if (p.nr_moves)
				assert_true(p.imbalance_after_ppm < before);
			for (size_t k = 0; k < p.nr_moves; k++)
				assert_true(p.moves[k].gap_before_ppm - p.moves[k].gap_after_ppm >=
					    BALANCE_MIN_GAIN_PPM);
			model_apply(&m, &p, false);
			moves = p.nr_moves;
			total += moves;
			nonempty += moves > 0;
			balance_plan_free(&p);
			assert_true(++runs < 100);
		} while (moves);
	}
	/* The pools were uneven enough to plan for. */
	fprintf(stderr, "random pools: %zu moves in %zu plans\n", total, nonempty);
	assert_true(total > 100 && nonempty > 30);
#undef RND
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_converges),
		cmocka_unit_test(test_cap_and_rounds),
		cmocka_unit_test(test_threshold_and_gain),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_evacuate),
		cmocka_unit_test(test_random_pools),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
