/* placement.c: the pool's decisions at the scale (docs/benchmarks.md,
 * "Pool placement and balance"): 640 VMs placed one by one on 64 hosts (as
 * `cella vm start` would, each placement seeing the earlier ones), the same
 * 640 as one HA batch, a balance plan over the 64 hosts, and the evacuation
 * of one host. Prints each operation's time (median and worst of --runs).
 *
 *   build/bench/bench-placement [--runs N] [--hosts H] [--vms V] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"
#include "fence.h"
#include "placement.h"

static const char *const nfs1[] = { "nfs1" };
static const char *const nfs12[] = { "nfs1", "nfs2" };
static const char *const only_nfs2[] = { "nfs2" };

struct pool {
	size_t nh, nv;
	struct place_host *h;
	char (*hname)[32];
	struct place_vm *v;
	char (*vname)[32];
	char (*gname)[16];
	size_t *where;
	struct place_vm *byhost;   /* nh * nv slots */
};

static unsigned seed = 1;

static unsigned rnd(unsigned n)
{
	seed = seed * 1103515245 + 12345;
	return (seed >> 16) % n;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void pool_make(struct pool *p, size_t nh, size_t nv)
{
	p->nh = nh;
	p->nv = nv;
	p->h = calloc(nh, sizeof(*p->h));
	p->hname = calloc(nh, sizeof(*p->hname));
	p->v = calloc(nv, sizeof(*p->v));
	p->vname = calloc(nv, sizeof(*p->vname));
	p->gname = calloc(nv, sizeof(*p->gname));
	p->where = calloc(nv, sizeof(*p->where));
	p->byhost = calloc(nh * nv, sizeof(*p->byhost));
	if (!p->h || !p->hname || !p->v || !p->vname || !p->gname || !p->where || !p->byhost) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	seed = 1;
	for (size_t i = 0; i < nh; i++) {
		bool big = i % 4 != 0;

		snprintf(p->hname[i], sizeof(p->hname[i]), "host%03zu", i);
		p->h[i] = (struct place_host){ .name = p->hname[i], .state = POOL_HOST_UP,
					       .memory_mib = big ? 262144 : 131072, .cpus = big ? 64 : 32,
					       .memory_overcommit_pct = 100, .vcpu_ratio_pct = 400,
					       .storage = i % 2 ? nfs12 : nfs1, .nr_storage = i % 2 ? 2 : 1 };
	}
	for (size_t i = 0; i < nv; i++) {
		snprintf(p->vname[i], sizeof(p->vname[i]), "vm%04zu", i);
		p->v[i] = (struct place_vm){ .name = p->vname[i], .memory_mib = 1024u << rnd(5),
					     .vcpus = 1u << rnd(4), .priority = (int)rnd(4) };
		p->v[i].cpu_mcpu = p->v[i].vcpus * (100 + rnd(800));
		if (rnd(5) == 0) { /* a fifth in 40 anti-affinity groups */
			snprintf(p->gname[i], sizeof(p->gname[i]), "group%02u", rnd(40));
			p->v[i].group = p->gname[i];
		}
		if (rnd(10) == 0) {
			p->v[i].storage = only_nfs2;
			p->v[i].nr_storage = 1;
		} else {
			p->v[i].storage = nfs1;
			p->v[i].nr_storage = 1;
		}
	}
}

static void pool_free(struct pool *p)
{
	free(p->h);
	free(p->hname);
	free(p->v);
	free(p->vname);
	free(p->gname);
	free(p->where);
	free(p->byhost);
}

/* The hosts' records from where the VMs are (where[i] == nh: not placed). */
static void pool_records(struct pool *p)
{
	for (size_t h = 0; h < p->nh; h++) {
		p->h[h].memory_committed_mib = 0;
		p->h[h].cpu_load_mcpu = 0;
		p->h[h].vcpus_committed = 0;
		p->h[h].vms = &p->byhost[h * p->nv];
		p->h[h].nr_vms = 0;
	}
	for (size_t i = 0; i < p->nv; i++) {
		if (p->where[i] >= p->nh)
			continue;
		struct place_host *h = &p->h[p->where[i]];

		p->byhost[p->where[i] * p->nv + h->nr_vms++] = p->v[i];
		h->memory_committed_mib += p->v[i].memory_mib;
		h->cpu_load_mcpu += p->v[i].cpu_mcpu;
		h->vcpus_committed += p->v[i].vcpus;
	}
}

/* Place every VM one by one, each seeing the earlier ones in the records. */
static size_t place_one_by_one(struct pool *p, double *worst)
{
	size_t placed = 0;

	for (size_t i = 0; i < p->nv; i++)
		p->where[i] = p->nh;
	pool_records(p);
	*worst = 0;
	for (size_t i = 0; i < p->nv; i++) {
		struct place_result r;
		double t0 = now_ms();
		int h = place_vm(p->h, p->nh, &p->v[i], NULL, NULL, &r);
		double t = now_ms() - t0;

		*worst = t > *worst ? t : *worst;
		if (h < 0)
			continue;
		/* What the pool layer would record: the host's figures and its VM. */
		struct place_host *ph = &p->h[h];

		p->where[i] = (size_t)h;
		p->byhost[(size_t)h * p->nv + ph->nr_vms++] = p->v[i];
		ph->memory_committed_mib += p->v[i].memory_mib;
		ph->cpu_load_mcpu += p->v[i].cpu_mcpu;
		ph->vcpus_committed += p->v[i].vcpus;
		placed++;
	}
	return placed;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, int runs, const char *note)
{
	qsort(t, (size_t)runs, sizeof(*t), cmp_double);
	printf("| %s | %.3f ms | %.3f ms | %s |\n", what, t[runs / 2], t[runs - 1], note);
}

int main(int argc, char **argv)
{
	int runs = 20;
	size_t nh = 64, nv = 640;
	struct pool p;
	char note[256];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--hosts") && i + 1 < argc)
			nh = (size_t)atol(argv[++i]);
		else if (!strcmp(argv[i], "--vms") && i + 1 < argc)
			nv = (size_t)atol(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--runs N] [--hosts H] [--vms V]\n", argv[0]);
			return 2;
		}
	}
	if (runs < 1 || nh < 2 || nv < 1)
		return 2;
	pool_make(&p, nh, nv);
	double *t = calloc((size_t)runs, sizeof(*t)), worst_one = 0;
	size_t placed = 0;

	printf("%zu hosts, %zu VMs, %d runs\n\n", nh, nv, runs);
	printf("| operation | median | worst run | result |\n|---|---|---|---|\n");

	for (int r = 0; r < runs; r++) {
		double w, t0 = now_ms();

		placed = place_one_by_one(&p, &w);
		t[r] = now_ms() - t0;
		worst_one = w > worst_one ? w : worst_one;
	}
	snprintf(note, sizeof(note), "%zu placed; one placement at most %.3f ms", placed, worst_one);
	report("place one by one", t, runs, note);

	struct place_result *res = calloc(nv, sizeof(*res));
	int nb = 0;

	for (size_t i = 0; i < nv; i++)
		p.where[i] = nh;
	pool_records(&p);
	for (int r = 0; r < runs; r++) {
		double t0 = now_ms();

		nb = place_batch(p.h, nh, p.v, nv, res, NULL);
		t[r] = now_ms() - t0;
	}
	snprintf(note, sizeof(note), "%d placed", nb);
	report("HA batch (one call)", t, runs, note);

	/* Balance: the one-by-one placement, then the load shifts: every VM's
	 * CPU use drawn again, the first quarter of the hosts' VMs busier. */
	(void)place_one_by_one(&p, &worst_one);
	for (size_t i = 0; i < nv; i++)
		p.v[i].cpu_mcpu = p.v[i].vcpus * (p.where[i] < nh / 4 ? 900 : 50 + rnd(300));
	pool_records(&p);
	struct balance_plan plan;
	struct balance_settings bs = { 0 };

	for (int cap = 0; cap < 2; cap++) {
		bs.max_moves = cap ? 64 : 0;
		for (int r = 0; r < runs; r++) {
			double t0 = now_ms();

			if (balance_plan(p.h, nh, &bs, &plan)) {
				fprintf(stderr, "out of memory\n");
				return 1;
			}
			t[r] = now_ms() - t0;
			if (r < runs - 1)
				balance_plan_free(&plan);
		}
		snprintf(note, sizeof(note), "%zu moves, imbalance %.3f -> %.3f", plan.nr_moves,
			 plan.imbalance_before_ppm / 1e6, plan.imbalance_after_ppm / 1e6);
		report(cap ? "balance plan, cap 64 moves" : "balance plan, cap 8 moves (default)", t,
		       runs, note);
		balance_plan_free(&plan);
	}

	size_t busiest = 0;

	for (size_t h = 0; h < nh; h++)
		busiest = p.h[h].nr_vms > p.h[busiest].nr_vms ? h : busiest;
	for (int r = 0; r < runs; r++) {
		double t0 = now_ms();

		if (balance_evacuate(p.h, nh, busiest, NULL, &plan)) {
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		t[r] = now_ms() - t0;
		if (r < runs - 1)
			balance_plan_free(&plan);
	}
	snprintf(note, sizeof(note), "%zu VMs in %zu batches, %zu stuck", plan.nr_moves, plan.nr_batches,
		 plan.nr_stuck);
	report("evacuate the fullest host", t, runs, note);
	balance_plan_free(&plan);

	struct fence_settings fs;

	fence_settings_default(&fs);
	printf("\nfencing defaults: ttl %u ms, renew %u ms, kill %u ms, margin %u ms, drift %u ppm: "
	       "fence %u ms after the last renewal; failover bound %llu ms\n", fs.ttl_ms, fs.renew_ms,
	       fs.kill_ms, fs.margin_ms, fs.drift_ppm, fs.fence_ms,
	       (unsigned long long)fence_failover_bound_ms(&fs));
	free(res);
	free(t);
	pool_free(&p);
	return 0;
}
