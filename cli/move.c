/* move.c: `cella vm move` (Move-VM) and the peer hosts it moves VMs to:
 * `cella host add|list|remove`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

enum { O_TO = 400, O_STORAGE, O_QUICK, O_DOWNTIME, O_BW, O_URL, O_TOKEN, O_TOKEN_FILE, O_TLS_NAME };

int cmd_move(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, O_TO},
	    {"include-storage", no_argument, NULL, O_STORAGE},
	    {"quick", no_argument, NULL, O_QUICK},
	    {"downtime", required_argument, NULL, O_DOWNTIME},
	    {"max-bandwidth", required_argument, NULL, O_BW},
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
		switch (o) {
		case O_TO:
			json_object_set_new(body, "to", json_string(optarg));
			break;
		case O_STORAGE:
		case O_QUICK:
			json_object_set_new(body, o == O_QUICK ? "quick" : "include_storage",
			                    json_true());
			break;
		case O_DOWNTIME:
		case O_BW:
			if (parse_num(argv[optind - 1], optarg, &n)) {
				json_decref(body);
				return EXIT_USAGE;
			}
			json_object_set_new(body, o == O_BW ? "max_bandwidth" : "downtime_ms",
			                    json_integer(n));
			break;
		default:
			json_decref(body);
			return usage_error("unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	if (optind < argc || !json_object_get(body, "to")) {
		json_decref(body);
		return optind < argc ? usage_error("unexpected argument '%s'", argv[optind])
		                     : usage_error("%s", "--to HOST is required (cella host list)");
	}
	vm_path(path, sizeof(path), argv[1], "/move");
	ret = client_send(c, "POST", path, body, &out);
	if (ret)
		return ret;
	return print_reply(c, out,
	                   "%s moved to %s (%s): %lld ms in all, %lld ms downtime, %lld rounds, "
	                   "%lld bytes\n",
	                   argv[1], json_string_value(json_object_get(out, "to")) ?: "?",
	                   json_string_value(json_object_get(out, "mode")) ?: "?",
	                   (long long)json_integer_value(json_object_get(out, "total_ms")),
	                   (long long)json_integer_value(json_object_get(out, "downtime_ms")),
	                   (long long)json_integer_value(json_object_get(out, "rounds")),
	                   (long long)json_integer_value(json_object_get(out, "bytes")));
}

int cmd_host_add(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, O_URL},
	    {"token", required_argument, NULL, O_TOKEN},
	    {"token-file", required_argument, NULL, O_TOKEN_FILE},
	    {"tls-name", required_argument, NULL, O_TLS_NAME},
	    {NULL, 0, NULL, 0},
	};
	char token[512];
	json_t *body, *out = NULL;
	int o, ret;

	if (argc < 2 || argv[1][0] == '-')
		return usage_error("%s", "a host name is required");
	body = json_pack("{s:s}", "name", argv[1]);
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == O_TOKEN_FILE) {
			if (read_token_file(optarg, token, sizeof(token))) {
				json_decref(body);
				return EXIT_USAGE;
			}
			json_object_set_new(body, "token", json_string(token));
		} else if (o == O_URL || o == O_TOKEN || o == O_TLS_NAME) {
			json_object_set_new(body,
			                    o == O_URL     ? "url"
			                    : o == O_TOKEN ? "token"
			                                   : "tls_name",
			                    json_string(optarg));
		} else {
			json_decref(body);
			return usage_error("unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	if (optind < argc || !json_object_get(body, "url") || !json_object_get(body, "token")) {
		json_decref(body);
		return optind < argc ? usage_error("unexpected argument '%s'", argv[optind])
		                     : usage_error("%s", "--url and --token (or --token-file) are "
		                                         "required");
	}
	ret = client_send(c, "POST", "/v1/hosts", body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "host %s added (%s)\n", argv[1],
	                   json_string_value(json_object_get(out, "url")) ?: "?");
}

int cmd_host_list(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *h;
	size_t i;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "GET", "/v1/hosts", NULL, &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
	} else {
		printf("%-24s %-32s %s\n", "NAME", "URL", "TLS NAME");
		json_array_foreach(json_object_get(out, "hosts"), i, h)
		    printf("%-24s %-32s %s\n", json_string_value(json_object_get(h, "name")),
		           json_string_value(json_object_get(h, "url")),
		           json_string_value(json_object_get(h, "tls_name")) ?: "(from the URL)");
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_host_remove(struct client *c, int argc, char **argv)
{
	char path[512];
	int ret;

	if (argc != 2 || argv[1][0] == '-')
		return usage_error("%s", "exactly one host name is required");
	api_path(path, sizeof(path), "/v1/hosts/", argv[1], "");
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (!ret && !c->json)
		printf("host %s removed\n", argv[1]);
	return ret;
}
