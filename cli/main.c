/* main.c: cella, the command line for cellad: `cella vm create|list|show|
 * start|stop|kill|reset|pause|resume|set|delete|console|metrics`, `cella host
 * info`, `cella events`, `cella completion bash`. Human tables by default,
 * --json for scripts; exit statuses in client.h. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "client.h"
#include "commands.h"
#include "disk.h" /* cli/disk.h: cella disk ... */

#define DEFAULT_SOCKET "/run/cella/cellad.sock"

struct cmd {
	const char *group; /* "vm", "host", or NULL for top level */
	const char *name;
	const char *aliases; /* space-separated */
	const char *args;
	const char *help;
	int (*fn)(struct client *c, int argc, char **argv);
	const char *opts_help;
};

static const struct cmd *current;

int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "cella: ");
	fprintf(stderr, fmt, arg);
	if (current)
		fprintf(stderr, "\nUsage: cella %s%s%s %s (see --help)\n",
		        current->group ? current->group : "", current->group ? " " : "",
		        current->name, current->args);
	else
		fputc('\n', stderr);
	return EXIT_USAGE;
}

/* VM definition options (create and set) ---------------------------------- */

enum {
	O_KERNEL = 300,
	O_INITRD,
	O_CMDLINE,
	O_CPUS,
	O_MEMORY,
	O_DISK,
	O_NIC,
	O_RNG,
	O_NO_RNG,
	O_AUTOSTART,
	O_NO_AUTOSTART,
	O_RESTART,
	O_WEIGHT,
	O_MAX,
	O_UUID,
	O_TIMEOUT,
	O_NO_WAIT,
	O_HISTORY,
	O_NO_FOLLOW,
	O_SINCE,
	O_VM,
	O_HELP,
	O_DISK_QOS
};

static const struct option def_opts[] = {
    {"kernel", required_argument, NULL, O_KERNEL},
    {"initrd", required_argument, NULL, O_INITRD},
    {"cmdline", required_argument, NULL, O_CMDLINE},
    {"cpus", required_argument, NULL, O_CPUS},
    {"memory", required_argument, NULL, O_MEMORY},
    {"disk", required_argument, NULL, O_DISK},
    {"nic", required_argument, NULL, O_NIC},
    {"rng", no_argument, NULL, O_RNG},
    {"no-rng", no_argument, NULL, O_NO_RNG},
    {"autostart", no_argument, NULL, O_AUTOSTART},
    {"no-autostart", no_argument, NULL, O_NO_AUTOSTART},
    {"restart", required_argument, NULL, O_RESTART},
    {"cpu-weight", required_argument, NULL, O_WEIGHT},
    {"cpu-max", required_argument, NULL, O_MAX},
    {"uuid", required_argument, NULL, O_UUID},
    {"disk-qos", required_argument, NULL, O_DISK_QOS},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

#define DEF_OPTS_HELP                                                                              \
	"  --kernel FILE          kernel image (bzImage, vmlinux, PVH ELF)\n"                      \
	"  --initrd FILE          initial ramdisk\n"                                               \
	"  --cmdline STR          kernel command line\n"                                           \
	"  --cpus N               vCPUs (1-32)             (New-VM -ProcessorCount)\n"             \
	"  --memory MIB           memory in MiB            (New-VM -MemoryStartupBytes)\n"         \
	"  --disk PATH[,ro][,id=ID][,format=raw|qcow2][,iops=N][,iops_burst=N][,bps=N]\n"          \
	"         [,bps_burst=N][,cbt=on]  virtio-blk disk (repeatable; replaces the list;\n"      \
	"                         format probed when not given; IOPS count 8 KiB units)\n"         \
	"  --nic tap=NAME[,mac=MAC]  virtio-net NIC (repeatable; replaces the list)\n"             \
	"  --rng, --no-rng        virtio-rng device\n"                                             \
	"  --autostart, --no-autostart  start when the host boots\n"                               \
	"  --restart POLICY       never | on-crash | always\n"                                     \
	"  --cpu-weight N         relative CPU weight 1-10000 (Set-VMProcessor -RelativeWeight)\n" \
	"  --cpu-max PCT          CPU cap in % of the VM's vCPUs (Set-VMProcessor -Maximum)\n"

static const char def_opts_help[] = DEF_OPTS_HELP;

static const char set_opts_help[] =
    DEF_OPTS_HELP "  --disk-qos ID iops=N,iops_burst=N,bps=N,bps_burst=N\n"
                  "                         change one disk's I/O limits, live on a running VM\n"
                  "                         (Set-VMHardDiskDrive -MaximumIOPS); 0 = unlimited\n";

int parse_num(const char *opt, const char *s, json_int_t *v)
{
	char *end;

	errno = 0;
	*v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		return usage_error("expected a number after %s", opt);
	return 0;
}

/* iops=N and friends into o.qos; false if tok is not one of them. */
static bool disk_qos_opt(json_t *o, const char *tok)
{
	static const char *const keys[] = {"iops=", "iops_burst=", "bps=", "bps_burst="};
	json_t *q = json_object_get(o, "qos");
	char *end;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t n = strlen(keys[i]);
		long long v;

		if (strncmp(tok, keys[i], n))
			continue;
		if (!q)
			json_object_set_new(o, "qos", q = json_object());
		v = strtoll(tok + n, &end, 10);
		/* Not a number: send the text, cellad names the field. */
		{
			char key[16];

			snprintf(key, sizeof(key), "%.*s", (int)(n - 1), keys[i]);
			json_object_set_new(q, key,
			                    *end || end == tok + n ? json_string(tok + n)
			                                           : json_integer(v));
		}
		return true;
	}
	return false;
}

static json_t *parse_disk(const char *spec)
{
	char *dup = strdup(spec), *save = NULL, *tok, abs[PATH_MAX];
	json_t *o = json_object();

	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!json_object_get(o, "path"))
			json_object_set_new(o, "path", json_string(realpath(tok, abs) ? abs : tok));
		else if (!strcmp(tok, "ro"))
			json_object_set_new(o, "readonly", json_true());
		else if (!strcmp(tok, "rw"))
			json_object_set_new(o, "readonly", json_false());
		else if (!strncmp(tok, "id=", 3))
			json_object_set_new(o, "id", json_string(tok + 3));
		else if (!strncmp(tok, "format=", 7))
			json_object_set_new(o, "format", json_string(tok + 7));
		else if (!strcmp(tok, "cbt") || !strcmp(tok, "cbt=on") || !strcmp(tok, "cbt=off"))
			json_object_set_new(o, "cbt", json_boolean(strcmp(tok, "cbt=off")));
		else if (disk_qos_opt(o, tok))
			; /* iops=, iops_burst=, bps=, bps_burst= */
		else
			json_object_set_new(o, tok, json_true()); /* cellad names the bad field */
	}
	free(dup);
	return o;
}

static json_t *parse_nic(const char *spec)
{
	char *dup = strdup(spec), *save = NULL, *tok;
	json_t *o = json_object();

	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (eq) {
			*eq = 0;
			json_object_set_new(o, tok, json_string(eq + 1));
		} else {
			json_object_set_new(o, "tap", json_string(tok));
		}
	}
	free(dup);
	return o;
}

/* Parse definition options into a JSON object. Returns 0 or EXIT_USAGE. */
static int parse_def(int argc, char **argv, json_t *o, bool create)
{
	json_t *disks = NULL, *nics = NULL;
	char abs[PATH_MAX];
	json_int_t n;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", def_opts, NULL)) != -1) {
		switch (c) {
		case O_KERNEL:
		case O_INITRD:
			json_object_set_new(o, c == O_KERNEL ? "kernel" : "initrd",
			                    json_string(realpath(optarg, abs) ? abs : optarg));
			break;
		case O_CMDLINE:
			json_object_set_new(o, "cmdline", json_string(optarg));
			break;
		case O_CPUS:
		case O_MEMORY:
		case O_WEIGHT:
		case O_MAX:
			if (parse_num(argv[optind - 1], optarg, &n))
				return EXIT_USAGE;
			json_object_set_new(o,
			                    c == O_CPUS     ? "cpus"
			                    : c == O_MEMORY ? "memory_mib"
			                    : c == O_WEIGHT ? "cpu_weight"
			                                    : "cpu_max",
			                    json_integer(n));
			break;
		case O_DISK:
			if (!disks)
				json_object_set_new(o, "disks", disks = json_array());
			json_array_append_new(disks, parse_disk(optarg));
			break;
		case O_NIC:
			if (!nics)
				json_object_set_new(o, "nics", nics = json_array());
			json_array_append_new(nics, parse_nic(optarg));
			break;
		case O_RNG:
		case O_NO_RNG:
			json_object_set_new(o, "rng", json_boolean(c == O_RNG));
			break;
		case O_AUTOSTART:
		case O_NO_AUTOSTART:
			json_object_set_new(o, "autostart", json_boolean(c == O_AUTOSTART));
			break;
		case O_RESTART:
			json_object_set_new(o, "restart_policy", json_string(optarg));
			break;
		case O_UUID:
			if (!create)
				return usage_error("%s: the UUID cannot be changed", "--uuid");
			json_object_set_new(o, "uuid", json_string(optarg));
			break;
		case O_DISK_QOS: {
			json_t *q = json_object_get(o, "\x01disk_qos");

			/* --disk-qos ID SPEC: the spec is the next argument. */
			if (create || optind >= argc)
				return usage_error("%s", create
				                             ? "--disk-qos: use --disk ...,iops=N "
				                               "when creating"
				                             : "--disk-qos needs ID and a spec");
			if (!q)
				json_object_set_new(o, "\x01disk_qos", q = json_array());
			json_array_append_new(q, json_pack("[s, s]", optarg, argv[optind++]));
			break;
		}
		default:
			return usage_error("unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	return 0;
}

/* Output ------------------------------------------------------------------ */

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));

	if (s)
		puts(s);
	free(s);
}

static void fmt_uptime(json_int_t ms, char *out, size_t len)
{
	json_int_t s = ms / 1000;

	if (ms <= 0)
		snprintf(out, len, "-");
	else if (s < 60)
		snprintf(out, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", (long long)s / 60, (long long)s % 60);
	else
		snprintf(out, len, "%lldh%02lldm", (long long)s / 3600, (long long)(s / 60) % 60);
}

static void print_vm_table(json_t *vms)
{
	size_t i;
	json_t *v;

	printf("%-24s %-9s %4s %8s %9s %-9s %s\n", "NAME", "STATE", "CPUS", "MEMORY", "UPTIME",
	       "AUTOSTART", "UUID");
	json_array_foreach(vms, i, v)
	{
		char up[32], mem[32];

		fmt_uptime(json_integer_value(json_object_get(v, "uptime_ms")), up, sizeof(up));
		snprintf(mem, sizeof(mem), "%lldM",
		         (long long)json_integer_value(json_object_get(v, "memory_mib")));
		printf("%-24s %-9s %4lld %8s %9s %-9s %s\n",
		       json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "state")),
		       (long long)json_integer_value(json_object_get(v, "cpus")), mem, up,
		       json_is_true(json_object_get(v, "autostart")) ? "yes" : "no",
		       json_string_value(json_object_get(v, "uuid")));
	}
}

static void print_kv(json_t *o, int indent)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
	{
		if (json_is_object(v)) {
			printf("%*s%s:\n", indent, "", k);
			print_kv(v, indent + 2);
		} else if (json_is_array(v)) {
			size_t i;
			json_t *it;

			printf("%*s%s:%s\n", indent, "", k, json_array_size(v) ? "" : " (none)");
			json_array_foreach(v, i, it)
			{
				char *s = json_dumps(it, JSON_COMPACT | JSON_ENCODE_ANY);

				printf("%*s- %s\n", indent + 2, "", s ? s : "?");
				free(s);
			}
		} else {
			char *s = json_is_string(v) ? strdup(json_string_value(v))
			                            : json_dumps(v, JSON_ENCODE_ANY);

			printf("%*s%-16s %s\n", indent, "", k, s ? s : "");
			free(s);
		}
	}
}

static void show(struct client *c, json_t *j)
{
	if (c->json)
		print_json(j);
	else
		print_kv(j, 0);
}

/* Commands ---------------------------------------------------------------- */

int need_name(int argc, char **argv, int first_opt)
{
	(void)first_opt;
	if (argc < 2 || argv[1][0] == '-')
		return usage_error("%s", "a VM name is required");
	return 0;
}

int vm_path(char *out, size_t len, const char *name, const char *suffix)
{
	char *esc = curl_easy_escape(NULL, name, 0);

	snprintf(out, len, "/v1/vms/%s%s", esc ? esc : name, suffix);
	curl_free(esc);
	return 0;
}

static int cmd_list(struct client *c, int argc, char **argv)
{
	json_t *out;
	int ret;

	(void)argv;
	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "GET", "/v1/vms", NULL, &out);
	if (ret)
		return ret;
	if (c->json)
		print_json(out);
	else
		print_vm_table(json_object_get(out, "vms"));
	json_decref(out);
	return EXIT_OK;
}

static int cmd_create(struct client *c, int argc, char **argv)
{
	json_t *body = json_object(), *out;
	int ret;

	if (need_name(argc, argv, 2)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	json_object_set_new(body, "name", json_string(argv[1]));
	ret = parse_def(argc - 1, argv + 1, body, true);
	if (!ret && optind < argc - 1)
		ret = usage_error("unexpected argument '%s'", argv[optind + 1]);
	if (!ret)
		ret = client_call(c, "POST", "/v1/vms", body, &out);
	json_decref(body);
	if (ret)
		return ret;
	if (c->json)
		print_json(out);
	else
		printf("%s defined (uuid %s)\n", argv[1],
		       json_string_value(json_object_get(out, "uuid")));
	json_decref(out);
	return EXIT_OK;
}

static int cmd_set(struct client *c, int argc, char **argv)
{
	json_t *body = json_object(), *out = NULL, *qos;
	char path[512];
	size_t i;
	json_t *q;
	int ret;

	if (need_name(argc, argv, 2)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	ret = parse_def(argc - 1, argv + 1, body, false);
	if (!ret && !json_object_size(body))
		ret = usage_error("%s", "nothing to change: give at least one option");
	if (!ret && optind < argc - 1)
		ret = usage_error("unexpected argument '%s'", argv[optind + 1]);
	qos = json_incref(json_object_get(body, "\x01disk_qos"));
	json_object_del(body, "\x01disk_qos");
	/* Disk limits first (live), then the definition's other fields. */
	json_array_foreach(qos, i, q)
	{
		if (ret)
			break;
		ret = disk_qos_apply(c, argv[1], json_string_value(json_array_get(q, 0)),
		                     json_string_value(json_array_get(q, 1)));
	}
	json_decref(qos);
	if (!ret && qos && !json_object_size(body)) {
		json_decref(body);
		return EXIT_OK;
	}
	vm_path(path, sizeof(path), argv[1], "");
	if (!ret)
		ret = client_call(c, "PATCH", path, body, &out);
	json_decref(body);
	if (ret)
		return ret;
	if (c->json)
		print_json(out);
	else
		printf("%s changed\n", argv[1]);
	json_decref(out);
	return EXIT_OK;
}

static int simple_vm(struct client *c, int argc, char **argv, const char *method,
                     const char *suffix, json_t *body, json_t **out)
{
	char path[512];

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2 && !body)
		return usage_error("unexpected argument '%s'", argv[2]);
	vm_path(path, sizeof(path), argv[1], suffix);
	return client_call(c, method, path, body, out);
}

/* GET a VM resource (suffix "" for the VM itself) and print it. */
static int show_vm_resource(struct client *c, int argc, char **argv, const char *suffix)
{
	json_t *out;
	int ret = simple_vm(c, argc, argv, "GET", suffix, NULL, &out);

	if (ret)
		return ret;
	show(c, out);
	json_decref(out);
	return EXIT_OK;
}

static int cmd_show(struct client *c, int argc, char **argv)
{
	return show_vm_resource(c, argc, argv, "");
}

static int cmd_metrics(struct client *c, int argc, char **argv)
{
	return show_vm_resource(c, argc, argv, "/metrics");
}

static int action(struct client *c, int argc, char **argv, const char *verb, const char *done)
{
	json_t *out = NULL;
	char suffix[32];
	int ret;

	snprintf(suffix, sizeof(suffix), "/%s", verb);
	ret = simple_vm(c, argc, argv, "POST", suffix, NULL, &out);
	if (ret)
		return ret;
	if (c->json)
		print_json(out);
	else
		printf("%s %s (state: %s)\n", argv[1], done,
		       json_string_value(json_object_get(out, "state")) ?: "?");
	json_decref(out);
	return EXIT_OK;
}

static int cmd_start(struct client *c, int argc, char **argv)
{
	return action(c, argc, argv, "start", "started");
}

static int cmd_kill(struct client *c, int argc, char **argv)
{
	return action(c, argc, argv, "kill", "turned off");
}

static int cmd_reset(struct client *c, int argc, char **argv)
{
	return action(c, argc, argv, "reset", "reset");
}

static int cmd_pause(struct client *c, int argc, char **argv)
{
	return action(c, argc, argv, "pause", "paused");
}

static int cmd_resume(struct client *c, int argc, char **argv)
{
	return action(c, argc, argv, "resume", "resumed");
}

static int cmd_delete(struct client *c, int argc, char **argv)
{
	int ret = simple_vm(c, argc, argv, "DELETE", "", NULL, NULL);

	if (!ret && !c->json)
		printf("%s deleted\n", argv[1]);
	return ret;
}

/* Graceful stop: asks, then waits for stopped (unless --no-wait). */
static int cmd_stop(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"no-wait", no_argument, NULL, O_NO_WAIT},
	    {NULL, 0, NULL, 0},
	};
	json_t *body = json_object(), *out = NULL;
	bool wait = true;
	json_int_t timeout = 30;
	char path[512];
	int o, ret;

	if (need_name(argc, argv, 2)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == O_TIMEOUT && !parse_num("--timeout", optarg, &timeout)) {
			json_object_set_new(body, "timeout_s", json_integer(timeout));
		} else if (o == O_NO_WAIT) {
			wait = false;
		} else {
			json_decref(body);
			return o == O_TIMEOUT
			           ? EXIT_USAGE
			           : usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	vm_path(path, sizeof(path), argv[1], "/stop");
	ret = client_call(c, "POST", path, body, &out);
	json_decref(body);
	vm_path(path, sizeof(path), argv[1], "");
	/* The guest has until the timeout; cellad then turns the VM off. */
	for (time_t end = time(NULL) + timeout + 15; !ret && wait;) {
		const char *st = json_string_value(json_object_get(out, "state"));

		if (st && strcmp(st, "stopping"))
			break;
		if (time(NULL) > end) {
			fprintf(stderr, "cella: %s is still stopping\n", argv[1]);
			ret = EXIT_API;
			break;
		}
		json_decref(out);
		out = NULL;
		usleep(100 * 1000); /* polling the state: no event to wait on here */
		ret = client_call(c, "GET", path, NULL, &out);
	}
	if (!ret) {
		if (c->json)
			print_json(out);
		else
			printf("%s %s\n", argv[1],
			       json_string_value(json_object_get(out, "state")) ?: "?");
	}
	json_decref(out);
	return ret;
}

static int cmd_host(struct client *c, int argc, char **argv)
{
	json_t *out;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "GET", "/v1/host", NULL, &out);
	if (!ret) {
		show(c, out);
		json_decref(out);
	}
	return ret;
}

static int cmd_prometheus(struct client *c, int argc, char **argv)
{
	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	return client_get_text(c, "/metrics");
}

static int cmd_completion(struct client *c, int argc, char **argv);

static const struct cmd cmds[] = {
    {"vm", "list", "ls", "", "list VMs (Get-VM, virsh list --all)", cmd_list, NULL},
    {"vm", "create", "new define", "NAME --kernel FILE [OPTIONS]",
     "define a VM (New-VM, virsh define)", cmd_create, def_opts_help},
    {"vm", "show", "info dominfo", "NAME", "show a VM's definition and state", cmd_show, NULL},
    {"vm", "start", "restore", "NAME",
     "start a VM; a saved VM resumes from its saved state "
     "(Start-VM, virsh start / virsh restore)",
     cmd_start, NULL},
    {"vm", "save", "", "NAME",
     "save the VM's state to disk and stop it; start restores it "
     "(Save-VM, virsh managedsave)",
     cmd_save, NULL},
    {"vm", "delete-state", "discard-state", "NAME",
     "discard a saved VM's state: it becomes "
     "stopped (Remove-VMSavedState, virsh managedsave-remove)",
     cmd_delete_state, NULL},
    {"vm", "stop", "shutdown", "NAME [--timeout S] [--no-wait]",
     "graceful shutdown: the guest has S seconds (default from cellad, 30), then the VM is "
     "turned off (Stop-VM, virsh shutdown)",
     cmd_stop,
     "  --timeout S   seconds the guest gets before it is turned off\n"
     "  --no-wait     return while the VM is still stopping\n"},
    {"vm", "kill", "destroy turn-off", "NAME",
     "turn a VM off at once (Stop-VM -TurnOff, virsh destroy)", cmd_kill, NULL},
    {"vm", "reset", "restart", "NAME", "reset a VM (Restart-VM -Force, virsh reset)", cmd_reset,
     NULL},
    {"vm", "pause", "suspend", "NAME", "pause a VM's vCPUs (Suspend-VM, virsh suspend)", cmd_pause,
     NULL},
    {"vm", "resume", "", "NAME", "resume a paused VM (Resume-VM, virsh resume)", cmd_resume, NULL},
    {"vm", "set", "edit", "NAME [OPTIONS]",
     "change a VM (Set-VM, Set-VMProcessor); CPU limits and policies apply live, the rest "
     "needs the VM stopped; --disk-qos changes disk limits live",
     cmd_set, set_opts_help},
    {"vm", "delete", "rm remove undefine", "NAME",
     "delete a stopped VM (Remove-VM, virsh "
     "undefine)",
     cmd_delete, NULL},
    {"vm", "console", "", "NAME [--history BYTES] [--no-follow]",
     "attach to the serial console: recent output, then live; input goes to the guest; "
     "Ctrl-] detaches",
     cmd_console,
     "  --history BYTES  recent output to replay first (default 65536)\n"
     "  --no-follow      print the history and return\n"},
    {"vm", "metrics", "stats", "NAME",
     "state, uptime, vCPU time, exits, memory, disk and NIC "
     "counters",
     cmd_metrics, NULL},
    {"checkpoint", "create", "new", "NAME CP [--kind standard|production]",
     "checkpoint a VM: every disk gets a new layer; standard also keeps the memory of a "
     "running VM (Checkpoint-VM, virsh snapshot-create)",
     cmd_cp_create,
     "  --kind standard    disks and memory: applying it resumes the VM where it was (default)\n"
     "  --kind production  disks only, flushed: applying it boots the VM from them\n"},
    {"checkpoint", "list", "ls tree", "NAME",
     "the VM's checkpoint tree; * marks the current "
     "one (Get-VMSnapshot, virsh snapshot-list --tree)",
     cmd_cp_list, NULL},
    {"checkpoint", "apply", "revert restore", "NAME CP",
     "turn the VM off and go back to the "
     "checkpoint: a standard one leaves the VM saved, a production one stopped "
     "(Restore-VMSnapshot, virsh snapshot-revert)",
     cmd_cp_apply, NULL},
    {"checkpoint", "delete", "rm remove", "NAME CP",
     "delete a checkpoint, merging its disk "
     "layers into its children (Remove-VMSnapshot, virsh snapshot-delete)",
     cmd_cp_delete, NULL},
    {"vm", "move", "migrate", "NAME --to HOST [--include-storage] [--quick]",
     "move a running VM to another host: live (its memory is copied while it runs; it "
     "stops only for the last pages) or quick (save, send, restore) (Move-VM, virsh "
     "migrate --live)",
     cmd_move,
     "  --to HOST          the destination (cella host add)\n"
     "  --quick            quick migration: save here, send the state, restore there\n"
     "  --include-storage  the disks go too (quick: copied; live: needs the worker's\n"
     "                     storage migration); default: shared storage, same paths\n"
     "  --downtime MS      live: the longest pause the last round may take (default 300)\n"
     "  --max-bandwidth B  live: bytes per second at most (default: no limit)\n"},
    {"host", "info", "", "", "the host and cellad (Get-VMHost)", cmd_host, NULL},
    {"host", "add", "", "NAME --url URL (--token T | --token-file F) [--tls-name N]",
     "name a peer host VMs can move to: its cellad's TCP API and bearer token", cmd_host_add,
     "  --url URL          the peer cellad's TCP API, http://ADDRESS:PORT\n"
     "  --token T, --token-file F  its bearer token\n"
     "  --tls-name N       the name its migration certificate carries (default: the\n"
     "                     URL's address)\n"},
    {"host", "list", "ls", "", "the peer hosts VMs can move to", cmd_host_list, NULL},
    {"host", "remove", "rm delete", "NAME", "forget a peer host", cmd_host_remove, NULL},
    {"host", "metrics", "", "", "Prometheus text for every VM", cmd_prometheus, NULL},
    {NULL, "events", "", "[--vm NAME] [--since SEQ]", "follow the event stream (JSON lines)",
     cmd_events, NULL},
    {NULL, "completion", "", "bash", "print a bash completion script", cmd_completion, NULL},
};

static int cmd_completion(struct client *c, int argc, char **argv)
{
	(void)c;
	if (argc != 2 || strcmp(argv[1], "bash"))
		return usage_error("%s", "only 'cella completion bash' is supported");
	puts(
	    "# bash completion for cella; source it or put it in /etc/bash_completion.d/cella\n"
	    "_cella() {\n"
	    "  local cur=${COMP_WORDS[COMP_CWORD]} w1=${COMP_WORDS[1]} "
	    "sock=${CELLA_SOCKET:-" DEFAULT_SOCKET "}\n"
	    "  if [ $COMP_CWORD -eq 1 ]; then\n"
	    "    COMPREPLY=($(compgen -W 'vm host events completion help --json --socket --url "
	    "--token-file --help --version' -- \"$cur\")); return\n"
	    "  fi\n"
	    "  case $w1 in\n"
	    "  vm)\n"
	    "    if [ $COMP_CWORD -eq 2 ]; then\n"
	    "      COMPREPLY=($(compgen -W 'list create show start restore save delete-state stop "
	    "kill reset pause resume set delete console metrics move' -- \"$cur\"))\n"
	    "    elif [ $COMP_CWORD -eq 3 ]; then\n"
	    "      COMPREPLY=($(compgen -W \"$(cella --socket \"$sock\" --json vm list 2>/dev/null "
	    "| sed -n 's/^ *\"name\": \"\\(.*\\)\",$/\\1/p')\" -- \"$cur\"))\n"
	    "    else\n"
	    "      COMPREPLY=($(compgen -W '--kernel --initrd --cmdline --cpus --memory --disk "
	    "--nic --rng --no-rng --autostart --no-autostart --restart --cpu-weight --cpu-max "
	    "--timeout --no-wait --history --no-follow --disk-qos --to --quick --include-storage "
	    "--downtime --max-bandwidth --help' -- \"$cur\"))\n"
	    "      compopt -o default 2>/dev/null\n"
	    "    fi;;\n"
	    "  checkpoint)\n"
	    "    if [ $COMP_CWORD -eq 2 ]; then\n"
	    "      COMPREPLY=($(compgen -W 'create list apply delete' -- \"$cur\"))\n"
	    "    elif [ $COMP_CWORD -eq 3 ]; then\n"
	    "      COMPREPLY=($(compgen -W \"$(cella --socket \"$sock\" --json vm list 2>/dev/null "
	    "| sed -n 's/^ *\"name\": \"\\(.*\\)\",$/\\1/p')\" -- \"$cur\"))\n"
	    "    else\n"
	    "      COMPREPLY=($(compgen -W '--kind standard production --help' -- \"$cur\"))\n"
	    "    fi;;\n"
	    "  host)\n"
	    "    if [ $COMP_CWORD -eq 2 ]; then\n"
	    "      COMPREPLY=($(compgen -W 'info metrics add list remove' -- \"$cur\"))\n"
	    "    elif [ $COMP_CWORD -eq 3 ] && [ \"${COMP_WORDS[2]}\" = remove ]; then\n"
	    "      COMPREPLY=($(compgen -W \"$(cella --socket \"$sock\" host list 2>/dev/null "
	    "| awk 'NR>1{print $1}')\" -- \"$cur\"))\n"
	    "    else\n"
	    "      COMPREPLY=($(compgen -W '--url --token --token-file --tls-name --help' -- "
	    "\"$cur\"))\n"
	    "    fi;;\n"
	    "  completion) COMPREPLY=($(compgen -W 'bash' -- \"$cur\"));;\n"
	    "  esac\n"
	    "}\n"
	    "complete -F _cella cella");
	return EXIT_OK;
}

static void cmd_usage(const struct cmd *k, FILE *f)
{
	fprintf(f, "Usage: cella %s%s%s %s\n\n%s.\n", k->group ? k->group : "", k->group ? " " : "",
	        k->name, k->args, k->help);
	if (k->aliases[0])
		fprintf(f, "Aliases: %s\n", k->aliases);
	if (k->opts_help)
		fprintf(f, "\nOptions:\n%s", k->opts_help);
}

static void usage(FILE *f)
{
	fputs("Usage: cella [--socket PATH | --url URL --token-file FILE] [--json] COMMAND...\n"
	      "The command line for cellad, the cella management service.\n\nCommands:\n",
	      f);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char head[64];

		snprintf(head, sizeof(head), "%s%s%s %s", cmds[i].group ? cmds[i].group : "",
		         cmds[i].group ? " " : "", cmds[i].name, cmds[i].aliases[0] ? "*" : "");
		fprintf(f, "  %-18s %s\n", head, cmds[i].help);
	}
	fputs("  disk ...           image tools, run locally: create, info, resize, convert, "
	      "commit,\n"
	      "                     rebase, check, backup, restore (see 'cella disk --help')\n"
	      "  (* has aliases: see 'cella COMMAND --help')\n\n"
	      "Global options:\n"
	      "  --socket PATH      cellad's Unix socket (default $CELLA_SOCKET or " DEFAULT_SOCKET
	      ")\n"
	      "  --url URL          reach cellad over TCP instead (e.g. http://host:8419)\n"
	      "  --token-file FILE  bearer token for --url (or $CELLA_TOKEN)\n"
	      "  --json             machine-readable output\n\n"
	      "Exit status: 0 success, 1 cellad refused or failed the request, 2 usage error,\n"
	      "3 cannot reach cellad, 4 no such VM, 5 not possible in the VM's current state.\n",
	      f);
}

static bool name_is(const struct cmd *k, const char *w)
{
	const char *a = k->aliases;
	size_t n = strlen(w);

	if (!strcmp(k->name, w))
		return true;
	while (*a) {
		size_t l = strcspn(a, " ");

		if (l == n && !strncmp(a, w, n))
			return true;
		a += l + (a[l] == ' ');
	}
	return false;
}

int main(int argc, char **argv)
{
	struct client c = {.socket = getenv("CELLA_SOCKET"),
	                   .url = getenv("CELLA_URL"),
	                   .token = getenv("CELLA_TOKEN")};
	const char *group = NULL;
	char token_buf[512]; /* lives as long as c, which points into it */
	int i = 1, ret;

	if (!c.socket)
		c.socket = DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json")) {
			c.json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return EXIT_OK;
		} else if (!strcmp(argv[i], "--version")) {
			puts("cella 0.1.0");
			return EXIT_OK;
		} else if (i + 1 < argc && !strcmp(argv[i], "--socket")) {
			c.socket = argv[++i];
		} else if (i + 1 < argc && !strcmp(argv[i], "--url")) {
			c.url = argv[++i];
		} else if (i + 1 < argc && !strcmp(argv[i], "--token-file")) {
			FILE *f = fopen(argv[++i], "re");

			if (!f || !fgets(token_buf, sizeof(token_buf), f)) {
				fprintf(stderr, "cella: cannot read the token from %s\n", argv[i]);
				if (f)
					fclose(f);
				return EXIT_USAGE;
			}
			fclose(f);
			token_buf[strcspn(token_buf, "\r\n")] = 0;
			c.token = token_buf;
		} else {
			fprintf(stderr, "cella: unknown option '%s' (see cella --help)\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (i >= argc || !strcmp(argv[i], "help")) {
		usage(i >= argc ? stderr : stdout);
		return i >= argc ? EXIT_USAGE : EXIT_OK;
	}
	if (!strcmp(argv[i], "disk")) /* image tools: local, no cellad */
		return disk_cli_main(argc - i, argv + i);
	if (!strcmp(argv[i], "vm") || !strcmp(argv[i], "host") || !strcmp(argv[i], "checkpoint")) {
		group = argv[i++];
		if (i >= argc) {
			fprintf(stderr, "cella: '%s' needs a subcommand (see cella --help)\n",
			        group);
			return EXIT_USAGE;
		}
	}
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		const struct cmd *cmd = &cmds[k];

		if ((cmd->group == NULL) != (group == NULL) ||
		    (group && strcmp(cmd->group, group)) || !name_is(cmd, argv[i]))
			continue;
		current = cmd;
		for (int j = i + 1; j < argc; j++) {
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
				cmd_usage(cmd, stdout);
				return EXIT_OK;
			}
		}
		curl_global_init(CURL_GLOBAL_NOTHING); /* plain HTTP only: no TLS setup */
		opterr = 0;
		ret = cmd->fn(&c, argc - i, argv + i);
		curl_global_cleanup();
		return ret;
	}
	fprintf(stderr, "cella: unknown command '%s%s%s' (see cella --help)\n", group ? group : "",
	        group ? " " : "", argv[i]);
	return EXIT_USAGE;
}
