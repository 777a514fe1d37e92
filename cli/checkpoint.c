/* checkpoint.c: `cella checkpoint create|list|apply|delete` (Checkpoint-VM,
 * Get-VMSnapshot, Restore-VMSnapshot, Remove-VMSnapshot), and the VM state
 * commands `cella vm save|delete-state`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_find.h"
#include "commands.h"
#include "conf/disk.h"

static int cp_path(char *out, size_t len, const char *vm, const char *cp, const char *suffix)
{
	char base[512];

	vm_path(base, sizeof(base), vm, "/checkpoints");
	if (cp)
		snprintf(out, len, "%s/%s%s", base, cp, suffix);
	else
		snprintf(out, len, "%s", base);
	return 0;
}

/* NAME CP, nothing else. */
static int need_vm_cp(int argc, char **argv)
{
	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("%s", "a checkpoint name is required");
	if (argc > 3)
		return usage_error("unexpected argument '%s'", argv[3]);
	return 0;
}

int cmd_cp_create(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"kind", required_argument, NULL, 'k'},
	    {NULL, 0, NULL, 0},
	};
	json_t *body, *out = NULL;
	char path[600];
	int o, ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("%s", "a checkpoint name is required");
	body = json_pack("{s:s}", "name", argv[2]);
	optind = 3;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'k') {
			json_decref(body);
			return usage_error("unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
		json_object_set_new(body, "kind", json_string(optarg));
	}
	if (optind < argc) {
		json_decref(body);
		return usage_error("unexpected argument '%s'", argv[optind]);
	}
	cp_path(path, sizeof(path), argv[1], NULL, "");
	ret = client_send(c, "POST", path, body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "%s: checkpoint %s created (%s%s)\n", argv[1], argv[2],
	                   json_string_value(json_object_get(out, "kind")) ?: "?",
	                   json_is_true(json_object_get(out, "memory")) ? ", with memory" : "");
}

/* One line per checkpoint, children indented under their parent. */
static void print_tree(json_t *list, json_t *cp, int depth)
{
	char when[32] = "-";
	time_t t = (time_t)json_integer_value(json_object_get(cp, "created_at"));
	struct tm tm;
	size_t i;
	json_t *child;

	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%*s%s %-*s %-10s %-6s %s\n", depth * 2, "",
	       json_is_true(json_object_get(cp, "current")) ? "*" : "-",
	       30 - depth * 2 > 8 ? 30 - depth * 2 : 8,
	       json_string_value(json_object_get(cp, "name")),
	       json_string_value(json_object_get(cp, "kind")),
	       json_is_true(json_object_get(cp, "memory")) ? "memory" : "disks", when);
	json_array_foreach(json_object_get(cp, "children"), i, child)
	{
		json_t *c = json_find_by(list, "name", json_string_value(child) ?: "");

		if (c && depth < 64)
			print_tree(list, c, depth + 1);
	}
}

int cmd_cp_list(struct client *c, int argc, char **argv)
{
	char path[600];
	json_t *out, *list, *cp;
	size_t i;
	int ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	cp_path(path, sizeof(path), argv[1], NULL, "");
	ret = client_call(c, "GET", path, NULL, &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
		json_decref(out);
		return EXIT_OK;
	}
	list = json_object_get(out, "checkpoints");
	if (!json_array_size(list))
		printf("%s has no checkpoints\n", argv[1]);
	json_array_foreach(list, i, cp) if (json_is_null(json_object_get(cp, "parent")) ||
	                                    !json_object_get(cp, "parent")) print_tree(list, cp, 0);
	if (json_array_size(list))
		printf("(* current: the VM's state descends from it)\n");
	json_decref(out);
	return EXIT_OK;
}

int cmd_cp_apply(struct client *c, int argc, char **argv)
{
	char path[600];
	json_t *out = NULL;
	int ret = need_vm_cp(argc, argv);

	if (ret)
		return ret;
	cp_path(path, sizeof(path), argv[1], argv[2], "/apply");
	ret = client_call(c, "POST", path, NULL, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "%s: checkpoint %s applied (state: %s)\n", argv[1], argv[2],
	                   json_string_value(json_object_get(out, "state")) ?: "?");
}

int cmd_cp_delete(struct client *c, int argc, char **argv)
{
	char path[600];
	int ret = need_vm_cp(argc, argv);

	if (ret)
		return ret;
	cp_path(path, sizeof(path), argv[1], argv[2], "");
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (!ret && !c->json)
		printf("%s: checkpoint %s deleted\n", argv[1], argv[2]);
	return ret;
}

int cmd_save(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "POST", "/save", "saved");
}

int cmd_delete_state(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "DELETE", "/state", "saved state discarded");
}

/* --disk-qos ID iops=N,iops_burst=N,bps=N,bps_burst=N -> PATCH the disk. */
int disk_qos_apply(struct client *c, const char *vm, const char *id, const char *spec)
{
	struct disk_qos_config check = { 0 };
	struct conf_err ce;
	char path[600], base[512];
	json_t *qos, *body, *out = NULL;
	int ret;

	/* The QoS schema (conf/disk.h) checks keys and limits as cellad will;
	 * only the keys given are sent (the others keep their value). */
	if (conf_from_string(&conf_qos_schema, &check, spec, &ce))
		return usage_error("--disk-qos: %s", ce.reason);
	qos = conf_string_to_json(&conf_qos_schema, spec);
	body = json_pack("{s:o}", "qos", qos);
	vm_path(base, sizeof(base), vm, "/disks/");
	snprintf(path, sizeof(path), "%s%s", base, id);
	ret = client_send(c, "PATCH", path, body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "%s: disk %s limits set\n", vm, id);
}
