/* switch.c: `cella switch create, list, show, delete` (docs/networking.md),
 * and `cella vm set NAME --nic-policy N JSON`. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "commands.h"

int cmd_switch_create(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "uplink", required_argument, NULL, 'u' },
		{ "address", required_argument, NULL, 'a' },
		{ "stateful", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 } };
	const char *type = NULL, *uplink = NULL, *address = NULL;
	bool stateful = false;
	json_t *body, *out = NULL;
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 't')
			type = optarg;
		else if (opt == 'u')
			uplink = optarg;
		else if (opt == 'a')
			address = optarg;
		else if (opt == 's')
			stateful = true;
		else
			return EXIT_USAGE;
	}
	if (optind != argc - 1)
		return usage_error("expected one switch NAME%s", "");
	if (!type)
		return usage_error("--type external|internal|private is required%s", "");
	body = json_pack("{s:s, s:s}", "name", argv[optind], "type", type);
	if (uplink)
		json_object_set_new(body, "uplink", json_string(uplink));
	if (address)
		json_object_set_new(body, "address", json_string(address));
	if (stateful) /* its ports' ACLs pass replies (docs/networking.md) */
		json_object_set_new(body, "stateful", json_true());
	ret = client_send(c, "POST", "/v1/switches", body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "switch %s created (%s, bridge %s)\n", argv[optind], type,
			   json_string_value(json_object_get(out, "bridge")) ?: "?");
}

int cmd_switch_list(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *sw;
	size_t i;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = list_call(c, "/v1/switches", &out);
	if (ret || c->json)
		return ret;
	printf("%-20s %-9s %-15s %-18s %s\n", "NAME", "TYPE", "BRIDGE", "UPLINK/ADDRESS", "HOST");
	json_array_foreach(json_object_get(out, "switches"), i, sw) {
		json_t *h = json_object_get(sw, "host");
		const char *ua = json_string_value(json_object_get(sw, "uplink")) ?:
				 json_string_value(json_object_get(sw, "address")) ?: "-";

		printf("%-20s %-9s %-15s %-18s %s, %zu ports\n",
		       json_string_value(json_object_get(sw, "name")) ?: "?",
		       json_string_value(json_object_get(sw, "type")) ?: "?",
		       json_string_value(json_object_get(sw, "bridge")) ?: "?", ua,
		       !json_is_true(json_object_get(h, "present")) ? "missing"
		       : json_is_true(json_object_get(h, "up")) ? "up" : "down",
		       json_array_size(json_object_get(h, "ports")));
	}
	json_decref(out);
	return EXIT_OK;
}

int cmd_switch_show(struct client *c, int argc, char **argv)
{
	char path[512];
	json_t *out = NULL;
	int ret;

	if (argc != 2)
		return usage_error("expected one switch NAME%s", "");
	api_path(path, sizeof(path), "/v1/switches/", argv[1], "");
	ret = client_call(c, "GET", path, NULL, &out);
	if (ret)
		return ret;
	show_json(c, out);
	json_decref(out);
	return EXIT_OK;
}

int cmd_switch_delete(struct client *c, int argc, char **argv)
{
	char path[512];
	int ret;

	if (argc != 2)
		return usage_error("expected one switch NAME%s", "");
	api_path(path, sizeof(path), "/v1/switches/", argv[1], "");
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (ret)
		return ret;
	printf("switch %s deleted\n", argv[1]);
	return EXIT_OK;
}

int nic_policy_apply(struct client *c, const char *vm, const char *nic, const char *policy)
{
	json_error_t err;
	json_t *p = json_loads(policy, 0, &err), *out = NULL;
	char suffix[64];
	int ret;

	if (!p) {
		fprintf(stderr, "cella: --nic-policy %s: not JSON: %s\n", nic, err.text);
		return EXIT_USAGE;
	}
	if (strspn(nic, "0123456789") != strlen(nic) || !*nic || strlen(nic) > 3) {
		json_decref(p);
		return usage_error("--nic-policy: '%s' is not a NIC index (0, 1, ...)", nic);
	}
	snprintf(suffix, sizeof(suffix), "/nics/%s", nic);
	{
		char path[512];

		vm_path(path, sizeof(path), vm, suffix);
		ret = client_send(c, "PATCH", path, json_pack("{s:o}", "policy", p), &out);
	}
	if (ret)
		return ret;
	return print_reply(c, out, "%s: NIC %s's port policy changed\n", vm, nic);
}
