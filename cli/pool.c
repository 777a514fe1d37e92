/* pool.c: `cella pool create, token, join, status, leave` (docs/pool.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "client.h"
#include "commands.h"

int cmd_pool_status(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *h;
	size_t i;
	int ret;

	if (argc == 2 && !strcmp(argv[1], "--json"))
		c->json = true; /* cella pool status --json, as well as cella --json pool status */
	else if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = list_call(c, "/v1/pool", &out);
	if (ret || c->json)
		return ret;
	printf("pool %s (this host: %s)\n",
	       json_string_value(json_object_get(out, "pool")) ?: "?",
	       json_string_value(json_object_get(out, "host")) ?: "?");
	if (json_is_true(json_object_get(out, "stale")))
		printf("etcd cannot be reached: this host is isolated; the others as last seen\n");
	printf("%-20s %-12s %10s %5s %-28s %s\n", "HOST", "STATE", "MEMORY", "CPUS", "ADDRESS",
	       "VMS");
	json_array_foreach(json_object_get(out, "hosts"), i, h) {
		json_t *vms = json_object_get(h, "vms"), *v;
		char mem[32];
		size_t k;

		snprintf(mem, sizeof(mem), "%lld MiB",
			 (long long)json_integer_value(json_object_get(h, "memory_mib")));
		printf("%-20s %-12s %10s %5lld %-28s ", json_string_value(json_object_get(h, "name")),
		       json_string_value(json_object_get(h, "state")) ?: "?", mem,
		       (long long)json_integer_value(json_object_get(h, "cpus")),
		       json_string_value(json_object_get(h, "address")) ?: "-");
		if (!json_array_size(vms))
			fputs("-", stdout);
		json_array_foreach(vms, k, v)
			printf("%s%s", k ? "," : "", json_string_value(v) ?: "?");
		putchar('\n');
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_pool_leave(struct client *c, int argc, char **argv)
{
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "POST", "/v1/pool/leave", NULL, NULL);
	if (!ret && !c->json)
		printf("this host left the pool\n");
	return ret;
}

/* A PEM file's text into body[key]; 0 or EXIT_USAGE (printed). */
static int put_file(json_t *body, const char *key, const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[16384];
	size_t n;

	if (!f) {
		fprintf(stderr, "cella: %s: cannot read it\n", path);
		return EXIT_USAGE;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n == sizeof(buf) - 1) {
		fprintf(stderr, "cella: %s: larger than a PEM file should be\n", path);
		return EXIT_USAGE;
	}
	buf[n] = 0;
	json_object_set_new(body, key, json_string(buf));
	return 0;
}

static void print_token(json_t *out, const char *join_address)
{
	const char *t = json_string_value(json_object_get(out, "token"));

	printf("join token (shown once; it expires in %lld s, one host may use it):\n  %s\n",
	       (long long)(json_integer_value(json_object_get(out, "expires_at")) - time(NULL)),
	       t ?: "?");
	printf("on the host to add: cella pool join %s --token %s\n",
	       join_address && *join_address ? join_address : "ADDRESS", t ?: "?");
}

int cmd_pool_create(struct client *c, int argc, char **argv)
{
	enum { O_ETCD = 256, O_CA_CERT, O_CA_KEY, O_ADDRESS, O_HOST, O_LEASE, O_TOKEN_TTL };
	static const struct option opts[] = {
	    {"etcd", required_argument, NULL, O_ETCD},
	    {"ca-cert", required_argument, NULL, O_CA_CERT},
	    {"ca-key", required_argument, NULL, O_CA_KEY},
	    {"address", required_argument, NULL, O_ADDRESS},
	    {"host", required_argument, NULL, O_HOST},
	    {"lease-ttl", required_argument, NULL, O_LEASE},
	    {"token-ttl", required_argument, NULL, O_TOKEN_TTL},
	    {NULL, 0, NULL, 0},
	};
	json_t *body, *out = NULL, *eps = json_array();
	int o, ret = 0;

	if (argc < 2 || argv[1][0] == '-')
		return usage_error("%s", "the pool's name is required");
	body = json_pack("{s:s, s:o}", "name", argv[1], "etcd", eps);
	optind = 2;
	while (!ret && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		json_int_t v;

		switch (o) {
		case O_ETCD: {
			char *list = strdup(optarg), *save = NULL;

			for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save))
				json_array_append_new(eps, json_string(u));
			free(list);
			break;
		}
		case O_CA_CERT: ret = put_file(body, "ca_cert", optarg); break;
		case O_CA_KEY: ret = put_file(body, "ca_key", optarg); break;
		case O_ADDRESS: json_object_set_new(body, "address", json_string(optarg)); break;
		case O_HOST: json_object_set_new(body, "host", json_string(optarg)); break;
		case O_LEASE:
		case O_TOKEN_TTL:
			ret = parse_num(o == O_LEASE ? "--lease-ttl" : "--token-ttl", optarg, &v);
			json_object_set_new(body, o == O_LEASE ? "lease_ttl_s" : "token_ttl_s",
					    json_integer(v));
			break;
		default:
			ret = usage_error("unknown option or missing value '%s'", argv[optind - 1]);
		}
	}
	if (!ret && (optind < argc || !json_array_size(eps) ||
		     !json_object_get(body, "ca_cert") || !json_object_get(body, "ca_key")))
		ret = optind < argc ? usage_error("unexpected argument '%s'", argv[optind])
				    : usage_error("%s", "--etcd, --ca-cert and --ca-key are required");
	if (ret) {
		json_decref(body);
		return ret;
	}
	ret = client_send(c, "POST", "/v1/pool", body, &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
	} else {
		printf("pool %s created; this host is %s (cellad restarts on the pool's store)\n",
		       json_string_value(json_object_get(out, "pool")) ?: "?",
		       json_string_value(json_object_get(out, "host")) ?: "?");
		print_token(out, NULL);
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_pool_token(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"ttl", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	json_t *body = json_object(), *out = NULL;
	int o, ret = 0;

	optind = 1;
	while (!ret && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		json_int_t v;

		if (o == 't') {
			ret = parse_num("--ttl", optarg, &v);
			json_object_set_new(body, "ttl_s", json_integer(v));
		} else {
			ret = usage_error("unknown option or missing value '%s'", argv[optind - 1]);
		}
	}
	if (!ret && optind < argc)
		ret = usage_error("unexpected argument '%s'", argv[optind]);
	if (ret) {
		json_decref(body);
		return ret;
	}
	ret = client_send(c, "POST", "/v1/pool/tokens", body, &out);
	if (ret)
		return ret;
	if (c->json)
		print_json(out);
	else
		print_token(out, json_string_value(json_object_get(out, "join_address")));
	json_decref(out);
	return EXIT_OK;
}

int cmd_pool_join(struct client *c, int argc, char **argv)
{
	enum { O_TOKEN = 256, O_ADDRESS, O_HOST };
	static const struct option opts[] = {
	    {"token", required_argument, NULL, O_TOKEN},
	    {"address", required_argument, NULL, O_ADDRESS},
	    {"host", required_argument, NULL, O_HOST},
	    {NULL, 0, NULL, 0},
	};
	json_t *body, *out = NULL;
	int o, ret = 0;

	if (argc < 2 || argv[1][0] == '-')
		return usage_error("%s", "the address of a pool host is required (https://HOST:PORT)");
	body = json_pack("{s:s}", "to", argv[1]);
	optind = 2;
	while (!ret && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == O_TOKEN || o == O_ADDRESS || o == O_HOST)
			json_object_set_new(body, o == O_TOKEN ? "token" : o == O_ADDRESS ? "address"
					    : "host", json_string(optarg));
		else
			ret = usage_error("unknown option or missing value '%s'", argv[optind - 1]);
	}
	if (!ret && (optind < argc || !json_object_get(body, "token")))
		ret = optind < argc ? usage_error("unexpected argument '%s'", argv[optind])
				    : usage_error("%s", "--token is required");
	if (ret) {
		json_decref(body);
		return ret;
	}
	ret = client_send(c, "POST", "/v1/pool/join", body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "joined pool %s as host %s (cellad restarts on the pool's "
			   "store)\n", json_string_value(json_object_get(out, "pool")) ?: "?",
			   json_string_value(json_object_get(out, "host")) ?: "?");
}
