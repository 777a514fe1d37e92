/* replica.c: `cella replica enable|status|disable` (a VM replicated from
 * this host) and `cella replica list|show|failover|delete` (the replicas
 * this host keeps for others). docs/replica.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

enum { O_TO = 500, O_INTERVAL, O_KEEP, O_BW, O_POINT, O_NO_START, O_COMPRESSION, O_TEST,
       O_KEEP_FOR, O_CONSISTENT, O_PLANNED, O_TIMEOUT, O_NO_REVERSE, O_REVERSE_TO,
       O_FORCE };

/* Bytes per second: "20M", "512K", "1G" (powers of 1024) or a number. */
static int parse_rate(const char *s, json_int_t *bps)
{
	char *end;
	double v = strtod(s, &end);
	double mul = !*end ? 1 : !strcmp(end, "K") || !strcmp(end, "k") ? 1024.0
		     : !strcmp(end, "M") ? 1048576.0 : !strcmp(end, "G") ? 1073741824.0 : 0;

	if (end == s || v < 0 || !mul || v * mul > 1e15)
		return usage_error("--max-bandwidth: bytes per second such as 20M, 512K or "
				   "1000000, not '%s'", s);
	*bps = (json_int_t)(v * mul);
	return 0;
}


/* enable, and reverse (the same settings; --to optional: the old primary). */
static int settings_cmd(struct client *c, int argc, char **argv, bool reverse)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, O_TO},
	    {"interval", required_argument, NULL, O_INTERVAL},
	    {"keep", required_argument, NULL, O_KEEP},
	    {"max-bandwidth", required_argument, NULL, O_BW},
	    {"compression", required_argument, NULL, O_COMPRESSION},
	    {"keep-for", required_argument, NULL, O_KEEP_FOR},
	    {"consistent-every", required_argument, NULL, O_CONSISTENT},
	    {NULL, 0, NULL, 0},
	};
	json_t *body, *out = NULL;
	char path[512];
	json_int_t n;
	int o, ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	body = json_object();
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		ret = 0;
		switch (o) {
		case O_TO:
		case O_COMPRESSION:
			json_object_set_new(body, o == O_TO ? "to" : "compression", json_string(optarg));
			break;
		case O_INTERVAL: /* a bare number: milliseconds */
			if (!(ret = replica_parse_duration("--interval", optarg, true, 1000,
							   24 * 3600000LL, &n)))
				json_object_set_new(body, "interval_ms", json_integer(n));
			break;
		case O_KEEP_FOR:
			if (!(ret = replica_parse_duration("--keep-for", optarg, false, 1000,
							   366 * 24 * 3600000LL, &n)))
				json_object_set_new(body, "keep_for_s", json_integer((n + 999) / 1000));
			break;
		case O_CONSISTENT:
			if (!(ret = parse_num("--consistent-every", optarg, &n)) && (n < 1 || n > 1000))
				ret = usage_error("--consistent-every: K from 1 to 1000, not '%s'", optarg);
			if (!ret)
				json_object_set_new(body, "consistent_every", json_integer(n));
			break;
		case O_KEEP:
			if (!(ret = parse_num(argv[optind - 1], optarg, &n)))
				json_object_set_new(body, "keep", json_integer(n));
			break;
		case O_BW:
			if (!(ret = parse_rate(optarg, &n)))
				json_object_set_new(body, "max_bandwidth", json_integer(n));
			break;
		default:
			ret = usage_error("unknown option or missing value '%s'", argv[optind - 1]);
		}
		if (ret) {
			json_decref(body);
			return ret;
		}
	}
	if (optind < argc || (!reverse && !json_object_get(body, "to"))) {
		json_decref(body);
		return optind < argc ? usage_error("unexpected argument '%s'", argv[optind])
				     : usage_error("%s", "--to HOST is required (cella host list)");
	}
	vm_path(path, sizeof(path), argv[1], reverse ? "/replica/reverse" : "/replica");
	ret = client_call(c, "POST", path, body, &out);
	json_decref(body);
	if (ret)
		return ret;
	if (reverse)
		return print_reply(c, out, "%s: replicating back to %s, %s%s%s", argv[1],
				   json_string_value(json_object_get(out, "to")) ?: "?",
				   json_string_value(json_object_get(out, "since")) ? "since point " :
				   "from a full copy: ",
				   json_string_value(json_object_get(out, "since")) ?:
				   json_string_value(json_object_get(out, "warning")) ?: "",
				   "");
	return print_reply(c, out, "%s: replicating to %s every %lld ms", argv[1],
			   json_string_value(json_object_get(out, "to")) ?: "?",
			   (long long)json_integer_value(json_object_get(out, "interval_ms")));
}

int cmd_replica_enable(struct client *c, int argc, char **argv)
{
	return settings_cmd(c, argc, argv, false);
}

int cmd_replica_reverse(struct client *c, int argc, char **argv)
{
	return settings_cmd(c, argc, argv, true);
}

int cmd_replica_status(struct client *c, int argc, char **argv)
{
	json_t *out = NULL;
	int ret = vm_call(c, argc, argv, "GET", "/replica", &out);

	if (ret)
		return ret;
	show_json(c, out);
	json_decref(out);
	return EXIT_OK;
}

int cmd_replica_disable(struct client *c, int argc, char **argv)
{
	int ret = vm_call(c, argc, argv, "DELETE", "/replica", NULL);

	if (!ret && !c->json)
		printf("%s: no longer replicated (the target keeps its replica)\n", argv[1]);
	return ret;
}

int cmd_replica_list(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *r;
	size_t i;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = list_call(c, "/v1/replicas", &out);
	if (ret || c->json)
		return ret;
	printf("%-24s %-12s %-16s %6s  %s\n", "REPLICA", "STATE", "FROM", "POINTS", "LATEST");
	json_array_foreach(json_object_get(out, "replicas"), i, r) {
		json_t *pts = json_object_get(r, "points");

		printf("%-24s %-12s %-16s %6zu  %s\n", json_string_value(json_object_get(r, "name")),
		       json_string_value(json_object_get(r, "state")) ?: "?",
		       json_string_value(json_object_get(r, "from")) ?: "-", json_array_size(pts),
		       json_array_size(pts) ? json_string_value(json_array_get(pts,
						json_array_size(pts) - 1)) : "-");
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_replica_show(struct client *c, int argc, char **argv)
{
	json_t *out = NULL;
	char path[512];
	int ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	api_path(path, sizeof(path), "/v1/replicas/", argv[1], "");
	ret = client_call(c, "GET", path, NULL, &out);
	if (ret)
		return ret;
	show_json(c, out);
	json_decref(out);
	return EXIT_OK;
}

/* --planned, on the source: POST /v1/vms/NAME/replica/failover (body owned). */
static int planned_failover(struct client *c, const char *name, json_t *body)
{
	json_t *out = NULL, *rev;
	char path[512];
	int ret;

	if (json_object_get(body, "point") || json_object_get(body, "test")) {
		json_decref(body);
		return usage_error("%s", "--planned fails over to the last point, which it makes: no "
				   "--point or --test");
	}
	vm_path(path, sizeof(path), name, "/replica/failover");
	ret = client_call(c, "POST", path, body, &out);
	json_decref(body);
	if (ret)
		return ret;
	rev = json_object_get(out, "reverse");
	return print_reply(c, out, "%s: failed over to %s at point %s%s%s; %s%s%s", name,
			   json_string_value(json_object_get(out, "to")) ?: "?",
			   json_string_value(json_object_get(out, "point")) ?: "?",
			   json_is_true(json_object_get(out, "forced")) ? " (the guest did not shut "
			   "down: turned off, every block it wrote sent)" : "",
			   json_is_true(json_object_get(out, "started")) ? " and started" : "",
			   !rev ? "replication not reversed" : json_object_get(rev, "error") ?
			   "replication NOT reversed: " : json_is_true(json_object_get(rev, "full")) ?
			   "replicating back here from a full copy" : "replicating back here since "
			   "that point", rev && json_object_get(rev, "error") ?
			   json_string_value(json_object_get(rev, "error")) : "", "");
}

int cmd_replica_failover(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"point", required_argument, NULL, O_POINT},
	    {"no-start", no_argument, NULL, O_NO_START},
	    {"test", no_argument, NULL, O_TEST},
	    {"planned", no_argument, NULL, O_PLANNED},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"shutdown-timeout", required_argument, NULL, O_TIMEOUT},
	    {"force", no_argument, NULL, O_FORCE},
	    {"no-reverse", no_argument, NULL, O_NO_REVERSE},
	    {"reverse-to", required_argument, NULL, O_REVERSE_TO},
	    {NULL, 0, NULL, 0},
	};
	json_t *body, *out = NULL;
	char path[512];
	json_int_t n;
	int o, ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	body = json_object();
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == O_POINT) {
			json_object_set_new(body, "point", json_string(optarg));
		} else if (o == O_NO_START || o == O_TEST) {
			json_object_set_new(body, o == O_TEST ? "test" : "start", json_boolean(o == O_TEST));
		} else if (o == O_PLANNED || o == O_NO_REVERSE) {
			json_object_set_new(body, o == O_PLANNED ? "planned" : "reverse",
					    json_boolean(o == O_PLANNED));
		} else if (o == O_REVERSE_TO) {
			json_object_set_new(body, "reverse_to", json_string(optarg));
		} else if (o == O_FORCE) {
			json_object_set_new(body, "force", json_true());
		} else if (o == O_TIMEOUT) {
			if ((ret = parse_num(argv[optind - 1], optarg, &n))) {
				json_decref(body);
				return ret;
			}
			json_object_set_new(body, "shutdown_timeout_s", json_integer(n));
		} else {
			json_decref(body);
			return usage_error("unknown option or missing value '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc) {
		json_decref(body);
		return usage_error("unexpected argument '%s'", argv[optind]);
	}
	if (json_object_get(body, "planned"))
		return planned_failover(c, argv[1], body);
	if (json_object_get(body, "reverse") || json_object_get(body, "reverse_to") ||
	    json_object_get(body, "shutdown_timeout_s") || json_object_get(body, "force")) {
		json_decref(body);
		return usage_error("%s", "--shutdown-timeout, --force, --no-reverse and --reverse-to "
				   "go with --planned");
	}
	api_path(path, sizeof(path), "/v1/replicas/", argv[1], "/failover");
	ret = client_call(c, "POST", path, body, &out);
	json_decref(body);
	if (ret)
		return ret;
	return print_reply(c, out, "%s: %s to point %s%s", argv[1],
			   json_is_true(json_object_get(out, "test")) ? "test failover (VM " : "failed over",
			   json_string_value(json_object_get(out, "point")) ?: "?",
			   json_is_true(json_object_get(out, "test")) ? ", no network)" :
			   json_is_true(json_object_get(out, "started")) ? " and started" : "");
}

/* `NAME` and nothing else: DELETE /v1/replicas/NAME<suffix>, then done. */
static int replica_delete_call(struct client *c, int argc, char **argv, const char *suffix,
			       const char *done)
{
	char path[512];
	int ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	api_path(path, sizeof(path), "/v1/replicas/", argv[1], suffix);
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (!ret && !c->json)
		printf("%s: %s\n", argv[1], done);
	return ret;
}

int cmd_replica_delete(struct client *c, int argc, char **argv)
{
	return replica_delete_call(c, argc, argv, "", "replica deleted");
}

int cmd_replica_test_stop(struct client *c, int argc, char **argv)
{
	return replica_delete_call(c, argc, argv, "/test",
				   "test failover ended (its VM and layers deleted)");
}
