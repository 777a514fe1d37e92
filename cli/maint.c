/* maint.c: `cella host maintenance HOST on|off` and `cella pool balance
 * [--dry-run]` (docs/pool.md, "Maintenance mode", "Balance"): the plan is
 * printed (moves with their reasons, VMs that cannot go, the imbalance
 * before and after), then what was done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "commands.h"

static const char *s_of(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "?";
}

/* 0..1 with three decimals, cut as balance.c's own summaries are. */
static double cut3(json_t *plan, const char *k)
{
	return (double)(long long)(json_real_value(json_object_get(plan, k)) * 1000.0) / 1000.0;
}

static void print_plan(json_t *plan)
{
	json_t *mv, *results = json_object_get(plan, "results");
	size_t i;

	printf("plan: %s\n", s_of(plan, "summary"));
	printf("imbalance %.3f -> %.3f (memory spread %.3f -> %.3f, CPU spread %.3f -> %.3f)\n",
	       cut3(plan, "imbalance_before"), cut3(plan, "imbalance_after"),
	       cut3(plan, "memory_spread_before"), cut3(plan, "memory_spread_after"),
	       cut3(plan, "cpu_spread_before"), cut3(plan, "cpu_spread_after"));
	if (!json_array_size(json_object_get(plan, "moves")))
		printf("no moves\n");
	json_array_foreach(json_object_get(plan, "moves"), i, mv) {
		json_t *r = json_array_get(results, i);

		printf("  [%s %lld] %s: %s -> %s (%s)%s%s\n",
		       strcmp(s_of(plan, "kind"), "evacuate") ? "step" : "batch",
		       (long long)json_integer_value(json_object_get(mv, "batch")), s_of(mv, "vm"),
		       s_of(mv, "from"), s_of(mv, "to"),
		       json_is_true(json_object_get(mv, "live")) ? "live" : "stopped: hand-over",
		       !r ? "" : json_is_true(json_object_get(r, "ok")) ? ": done" : ": FAILED: ",
		       r && !json_is_true(json_object_get(r, "ok")) ? s_of(r, "error") : "");
		printf("      %s\n", s_of(mv, "reason"));
	}
	json_array_foreach(json_object_get(plan, "stuck"), i, mv)
		printf("  stays: %s on %s: %s\n", s_of(mv, "vm"), s_of(mv, "from"), s_of(mv, "reason"));
}

int cmd_host_maintenance(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *plan;
	char path[512];
	int ret;

	if (argc != 3 || (strcmp(argv[2], "on") && strcmp(argv[2], "off")))
		return usage_error("%s", "expected HOST on|off");
	api_path(path, sizeof(path), "/v1/pool/hosts/", argv[1], "/maintenance");
	ret = client_send(c, "POST", path, json_pack("{s:s}", "state", argv[2]), &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
		json_decref(out);
		return EXIT_OK;
	}
	printf("host %s: %s\n", s_of(out, "host"), s_of(out, "state"));
	plan = json_object_get(out, "plan");
	if (plan) {
		json_object_set(plan, "results", json_object_get(out, "results"));
		print_plan(plan);
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_pool_balance(struct client *c, int argc, char **argv)
{
	json_t *out = NULL;
	bool dry = false;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run"))
			dry = true;
		else if (!strcmp(argv[i], "--json"))
			c->json = true;
		else
			return usage_error("unexpected argument '%s'", argv[i]);
	}
	ret = client_send(c, "POST", "/v1/pool/balance", json_pack("{s:b}", "dry_run", dry), &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
	} else {
		if (dry)
			printf("dry run: nothing moves\n");
		print_plan(out);
	}
	json_decref(out);
	return EXIT_OK;
}
