/* vm.c: the `cella vm` lifecycle commands: list, create, set (with the VM
 * definition options they share), show, metrics, start, stop, kill, reset,
 * pause, resume, delete. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "conf/disk.h"

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
	O_HELP,
	O_DISK_QOS,
	O_HA,
	O_NO_HA,
	O_HA_PRIORITY,
	O_AA,
	O_AA_HARD,
	O_NO_AA,
	O_HOST,
	O_BALLOON,
	O_NO_BALLOON,
	O_BALLOON_TARGET,
	O_MERGE,
	O_NO_MERGE,
	O_HUGEPAGES,
	O_NO_HUGEPAGES,
	O_PREALLOC,
	O_NO_PREALLOC,
	O_THP,
	O_NO_THP,
	O_MEMORY_MAX,
	O_NIC_POLICY,
	O_DYNMEM,
	O_NO_DYNMEM,
	O_VSOCK,
	O_NO_VSOCK,
	O_VSOCK_CID,
	O_IMAGE,
	O_CPUS_MAX
};

static const struct option def_opts[] = {
    {"kernel", required_argument, NULL, O_KERNEL},
    {"image", required_argument, NULL, O_IMAGE},
    {"initrd", required_argument, NULL, O_INITRD},
    {"cmdline", required_argument, NULL, O_CMDLINE},
    {"cpus", required_argument, NULL, O_CPUS},
    {"cpus-max", required_argument, NULL, O_CPUS_MAX},
    {"memory", required_argument, NULL, O_MEMORY},
    {"memory-max", required_argument, NULL, O_MEMORY_MAX},
    {"disk", required_argument, NULL, O_DISK},
    {"nic", required_argument, NULL, O_NIC},
    {"net", required_argument, NULL, O_NIC},
    {"rng", no_argument, NULL, O_RNG},
    {"no-rng", no_argument, NULL, O_NO_RNG},
    {"balloon", no_argument, NULL, O_BALLOON},
    {"no-balloon", no_argument, NULL, O_NO_BALLOON},
    {"balloon-target", required_argument, NULL, O_BALLOON_TARGET},
    {"vsock", no_argument, NULL, O_VSOCK},
    {"no-vsock", no_argument, NULL, O_NO_VSOCK},
    {"vsock-cid", required_argument, NULL, O_VSOCK_CID},
    {"autostart", no_argument, NULL, O_AUTOSTART},
    {"no-autostart", no_argument, NULL, O_NO_AUTOSTART},
    {"restart", required_argument, NULL, O_RESTART},
    {"cpu-weight", required_argument, NULL, O_WEIGHT},
    {"cpu-max", required_argument, NULL, O_MAX},
    {"uuid", required_argument, NULL, O_UUID},
    {"disk-qos", required_argument, NULL, O_DISK_QOS},
    {"nic-policy", required_argument, NULL, O_NIC_POLICY},
    {"ha", no_argument, NULL, O_HA},
    {"no-ha", no_argument, NULL, O_NO_HA},
    {"ha-priority", required_argument, NULL, O_HA_PRIORITY},
    {"anti-affinity", required_argument, NULL, O_AA},
    {"anti-affinity-hard", required_argument, NULL, O_AA_HARD},
    {"no-anti-affinity", no_argument, NULL, O_NO_AA},
    {"memory-merge", no_argument, NULL, O_MERGE},
    {"dynamic-memory", required_argument, NULL, O_DYNMEM},
    {"no-dynamic-memory", no_argument, NULL, O_NO_DYNMEM},
    {"no-memory-merge", no_argument, NULL, O_NO_MERGE},
    {"hugepages", no_argument, NULL, O_HUGEPAGES},
    {"no-hugepages", no_argument, NULL, O_NO_HUGEPAGES},
    {"prealloc", no_argument, NULL, O_PREALLOC},
    {"no-prealloc", no_argument, NULL, O_NO_PREALLOC},
    {"thp", no_argument, NULL, O_THP},
    {"no-thp", no_argument, NULL, O_NO_THP},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

#define DEF_OPTS_HELP                                                                              \
	"  --kernel FILE          kernel image (bzImage, vmlinux, PVH ELF)\n"                      \
	"  --image IMG[,DISK OPTIONS]  boot the default entry of IMG's own /boot (grub.cfg,\n"   \
	"                         BLS, vmlinuz; ext2/3/4): IMG becomes the first disk, and\n"   \
	"                         --cmdline is appended to the image's command line\n"          \
	"  --initrd FILE          initial ramdisk\n"                                               \
	"  --cmdline STR          kernel command line\n"                                           \
	"  --cpus N               vCPUs (1-32)             (New-VM -ProcessorCount);\n"            \
	"                         on a running VM with --cpus-max: hot-plug (ACPI)\n"           \
	"  --cpus-max N           vCPU hot-plug ceiling, 0 = none (guest needs ACPI)\n"         \
	"  --memory MIB           memory in MiB            (New-VM -MemoryStartupBytes);\n"        \
	"                         on a running VM with --memory-max: hot-plug (virtio-mem)\n"    \
	"  --memory-max MIB       hot-plug ceiling, 0 = none (Set-VMMemory -MaximumBytes)\n"     \
	"  --disk PATH[,ro][,id=ID][,format=raw|qcow2][,iops=N][,iops_burst=N][,bps=N]\n"          \
	"         [,bps_burst=N][,cbt=on]  virtio-blk disk (repeatable; replaces the list;\n"      \
	"                         format probed when not given; IOPS count 8 KiB units)\n"         \
	"  --nic SWITCH[,mac=MAC][,vlan=N][,queues=N] | tap=NAME[,mac=MAC][,queues=N]\n"     \
	"                         virtio-net NIC on a switch (cella switch) or on a tap of\n"   \
	"                         your own (repeatable; replaces the list); queues: tap\n"      \
	"                         queue pairs, 1 to the vCPUs (at most 3)\n"                     \
	"  --net user[,forward=tcp:HOSTPORT:GUESTPORT,...]  (also --nic) user-mode NIC through\n" \
	"                         passt: no root, no bridge; tcp:/udp: host port forwards\n"     \
	"  --rng, --no-rng        virtio-rng device\n"                                             \
	"  --balloon, --no-balloon  virtio-balloon (stats, free page reporting, deflate-on-OOM)\n" \
	"  --vsock, --no-vsock    virtio-vsock, its host side a Unix socket (uds_path in show)\n" \
	"  --vsock-cid N          virtio-vsock with guest CID N (3 and up; --vsock: 3)\n"   \
	"  --autostart, --no-autostart  start when the host boots\n"                               \
	"  --restart POLICY       never | on-crash | always\n"                                     \
	"  --cpu-weight N         relative CPU weight 1-10000 (Set-VMProcessor -RelativeWeight)\n" \
	"  --cpu-max PCT          CPU cap in % of the VM's vCPUs (Set-VMProcessor -Maximum)\n"      \
	"  --ha, --no-ha          restart on another host of the pool when this one fails\n"      \
	"                         (every disk on pool storage)\n"                                 \
	"  --ha-priority N        HA restart order 0-1000, higher first\n"                         \
	"  --anti-affinity GROUP  placement keeps the group's VMs on different hosts (soft)\n"    \
	"  --anti-affinity-hard GROUP  the same as a hard rule: refused rather than beside\n"    \
	"  --no-anti-affinity     no group\n"                                                  \
	"  --dynamic-memory min=MIB,max=MIB,buffer=PCT,weight=N (or on)  dynamic memory:\n"   \
	"                         the balancer moves the VM between min and max (--memory is\n" \
	"                         the startup memory); buffer 5-2000 % (20), weight 1-10000\n"  \
	"                         (5000); needs --balloon; live on a running VM\n"              \
	"  --no-dynamic-memory    fixed memory again\n"                                          \
	"  --memory-merge, --no-memory-merge  page sharing with other VMs (KSM; off by\n"      \
	"                         default: see docs/memory.md for the side channels)\n"       \
	"  --hugepages, --no-hugepages  guest memory in 2 MiB huge pages (reserved on the host)\n" \
	"  --prealloc, --no-prealloc  all guest memory allocated at start\n"                  \
	"  --thp, --no-thp        anonymous guest memory in transparent huge pages (a host\n"  \
	"                         whose shmem THP is never: docs/memory.md)\n"

const char vm_create_opts_help[] = DEF_OPTS_HELP;

const char vm_set_opts_help[] =
    DEF_OPTS_HELP "  --disk-qos ID iops=N,iops_burst=N,bps=N,bps_burst=N\n"
                  "                         change one disk's I/O limits, live on a running VM\n"
                  "                         (Set-VMHardDiskDrive -MaximumIOPS); 0 = unlimited\n"
                  "  --balloon-target MIB   memory the guest gives back through its balloon, live\n"
                  "                         on a running VM (0 = deflate); needs --balloon\n"
                  "  --nic-policy N JSON    switch NIC N's port policy, live on a running VM\n"
                  "                         (docs/networking.md); {} = none\n";

/* --disk PATH,...: the disk schema's option string (conf/disk.h) as the
 * API's disk object, the path made absolute. Values are typed but not
 * checked here: cellad names what is wrong, with the same schema. */
static json_t *parse_disk(const char *spec)
{
	json_t *o = conf_string_to_json(&conf_disk_schema, spec);
	const char *path = json_string_value(json_object_get(o, "path"));
	char abs[PATH_MAX];

	if (path && realpath(path, abs))
		json_object_set_new(o, "path", json_string(abs));
	return o;
}

static json_t *parse_nic(const char *spec)
{
	char *dup = strdup(spec), *save = NULL, *tok;
	json_t *o = json_object();

	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!strcmp(tok, "user")) { /* user-mode networking through passt */
			json_object_set_new(o, "user", json_true());
		} else if (!strncmp(tok, "forward=", 8) || !strncmp(tok, "tcp:", 4) ||
			   !strncmp(tok, "udp:", 4)) {
			json_t *fw = json_object_get(o, "forward");

			if (!fw)
				json_object_set_new(o, "forward", fw = json_array());
			json_array_append_new(fw, json_string(tok + (tok[0] == 'f' ? 8 : 0)));
		} else if (eq) {
			char *end;
			long v;

			*eq = 0;
			v = strtol(eq + 1, &end, 10);
			/* vlan and queues are numbers: cellad checks their ranges. */
			if ((!strcmp(tok, "vlan") || !strcmp(tok, "queues")) && *end == 0 &&
			    end != eq + 1)
				json_object_set_new(o, tok, json_integer(v));
			else
				json_object_set_new(o, tok, json_string(eq + 1));
		} else {
			json_object_set_new(o, "switch", json_string(tok));
		}
	}
	free(dup);
	return o;
}

/* Parse definition options into a JSON object. Returns 0 or EXIT_USAGE. */
/* --dynamic-memory min=MIB,max=MIB,buffer=PCT,weight=N (any of them, or
 * "on"): the API's dynamic_memory object, enabled; NULL: disabled. The
 * ranges are cellad's to check. */
static int parse_dynmem(json_t *o, const char *arg)
{
	static const char *const keys[][2] = { { "min", "minimum_mib" }, { "max", "maximum_mib" },
					       { "buffer", "buffer_pct" }, { "weight", "weight" } };
	json_t *dm = json_pack("{s:b}", "enabled", arg != NULL);
	char *copy = arg ? strdup(arg) : NULL, *save = NULL;

	for (char *kv = copy ? strtok_r(copy, ",", &save) : NULL; kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		json_int_t n;
		size_t k;

		if (!strcmp(kv, "on"))
			continue;
		for (k = 0; eq && k < ARRAY_SIZE(keys); k++)
			if ((size_t)(eq - kv) == strlen(keys[k][0]) && !strncmp(kv, keys[k][0], (size_t)(eq - kv)))
				break;
		if (!eq || k == ARRAY_SIZE(keys)) {
			int ret = usage_error("--dynamic-memory: '%s': expected min=MIB, max=MIB, "
					      "buffer=PCT, weight=N or on", kv);

			free(copy);
			json_decref(dm);
			return ret;
		}
		if (parse_num("--dynamic-memory", eq + 1, &n)) {
			free(copy);
			json_decref(dm);
			return EXIT_USAGE;
		}
		json_object_set_new(dm, keys[k][1], json_integer(n));
	}
	free(copy);
	json_object_set_new(o, "dynamic_memory", dm);
	return 0;
}

static int parse_def(int argc, char **argv, json_t *o, bool create)
{
	json_t *disks = NULL, *nics = NULL, *image = NULL;
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
		case O_CPUS_MAX:
		case O_MEMORY:
		case O_MEMORY_MAX:
		case O_WEIGHT:
		case O_MAX:
		case O_HA_PRIORITY:
			if (parse_num(argv[optind - 1], optarg, &n))
				return EXIT_USAGE;
			json_object_set_new(o,
			                    c == O_CPUS          ? "cpus"
			                    : c == O_CPUS_MAX    ? "cpus_max"
			                    : c == O_MEMORY      ? "memory_mib"
			                    : c == O_MEMORY_MAX  ? "memory_max_mib"
			                    : c == O_WEIGHT      ? "cpu_weight"
			                    : c == O_HA_PRIORITY ? "ha_priority"
			                                         : "cpu_max",
			                    json_integer(n));
			break;
		case O_DISK:
			if (!disks)
				json_object_set_new(o, "disks", disks = json_array());
			json_array_append_new(disks, parse_disk(optarg));
			break;
		case O_IMAGE:
			if (image)
				return usage_error("%s", "--image: give one image");
			image = parse_disk(optarg);
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
		case O_BALLOON:
		case O_NO_BALLOON:
			json_object_set_new(o, "balloon", json_boolean(c == O_BALLOON));
			break;
		case O_VSOCK:
		case O_NO_VSOCK:
			json_object_set_new(o, "vsock", json_boolean(c == O_VSOCK));
			break;
		case O_VSOCK_CID:
			if (parse_num(argv[optind - 1], optarg, &n))
				return EXIT_USAGE;
			json_object_set_new(o, "vsock", json_pack("{s:I}", "cid", (json_int_t)n));
			break;
		case O_BALLOON_TARGET:
			if (create)
				return usage_error("%s", "--balloon-target: set it on the running VM "
							 "(cella vm set NAME --balloon-target MIB)");
			if (parse_num(argv[optind - 1], optarg, &n))
				return EXIT_USAGE;
			json_object_set_new(o, "\x02target_mib", json_integer((json_int_t)n));
			break;
		case O_AUTOSTART:
		case O_NO_AUTOSTART:
			json_object_set_new(o, "autostart", json_boolean(c == O_AUTOSTART));
			break;
		case O_HA:
		case O_NO_HA:
			json_object_set_new(o, "ha", json_boolean(c == O_HA));
			break;
		case O_MERGE:
		case O_NO_MERGE:
		case O_HUGEPAGES:
		case O_NO_HUGEPAGES:
		case O_PREALLOC:
		case O_NO_PREALLOC:
		case O_THP:
		case O_NO_THP: {
			json_t *mem = json_object_get(o, "memory");

			if (!mem)
				json_object_set_new(o, "memory", mem = json_object());
			json_object_set_new(mem,
			                    c == O_MERGE || c == O_NO_MERGE         ? "merge"
			                    : c == O_HUGEPAGES || c == O_NO_HUGEPAGES ? "hugepages"
			                    : c == O_THP || c == O_NO_THP             ? "thp"
			                                                              : "prealloc",
			                    json_boolean(c == O_MERGE || c == O_HUGEPAGES ||
			                                 c == O_PREALLOC || c == O_THP));
			break;
		}
		case O_DYNMEM:
		case O_NO_DYNMEM:
			if (parse_dynmem(o, c == O_DYNMEM ? optarg : NULL))
				return EXIT_USAGE;
			break;
		case O_RESTART:
			json_object_set_new(o, "restart_policy", json_string(optarg));
			break;
		case O_AA:
		case O_AA_HARD:
			json_object_set_new(o, "anti_affinity", json_string(optarg));
			json_object_set_new(o, "anti_affinity_hard", json_boolean(c == O_AA_HARD));
			break;
		case O_NO_AA:
			json_object_set_new(o, "anti_affinity", json_null());
			json_object_set_new(o, "anti_affinity_hard", json_false());
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
		case O_NIC_POLICY: {
			json_t *q = json_object_get(o, "\x03nic_policy");

			/* --nic-policy N JSON: the policy is the next argument. */
			if (create || optind >= argc)
				return usage_error("%s", create
				                             ? "--nic-policy: give the policy with "
				                               "cella vm set after create"
				                             : "--nic-policy needs N and a JSON policy");
			if (!q)
				json_object_set_new(o, "\x03nic_policy", q = json_array());
			json_array_append_new(q, json_pack("[s, s]", optarg, argv[optind++]));
			break;
		}
		default:
			return usage_error("unknown option or missing value '%s'",
			                   argv[optind - 1]);
		}
	}
	if (image) { /* the first disk, and no kernel: cellad reads the image's */
		if (json_object_get(o, "kernel")) {
			json_decref(image);
			return usage_error("%s", "--image boots the image's own kernel: give "
			                         "--kernel or --image, not both");
		}
		if (!disks)
			json_object_set_new(o, "disks", disks = json_array());
		json_array_insert_new(disks, 0, image);
		if (!create)
			json_object_set_new(o, "kernel", json_null());
	}
	return 0;
}

/* Output ------------------------------------------------------------------ */

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
	bool pool = false; /* in a pool every VM has its host: a column for it */
	bool stale = false; /* another host's VM as last seen: etcd is away */
	size_t i;
	json_t *v;

	json_array_foreach(vms, i, v)
		pool |= json_string_value(json_object_get(v, "host")) != NULL;
	if (pool)
		printf("%-16s ", "HOST");
	printf("%-24s %-9s %4s %8s %9s %-9s %s\n", "NAME", "STATE", "CPUS", "MEMORY", "UPTIME",
	       "AUTOSTART", "UUID");
	json_array_foreach(vms, i, v)
	{
		char up[32], mem[32], state[24];

		fmt_uptime(json_integer_value(json_object_get(v, "uptime_ms")), up, sizeof(up));
		snprintf(mem, sizeof(mem), "%lldM",
		         (long long)json_integer_value(json_object_get(v, "memory_mib")));
		if (pool)
			printf("%-16s ", json_string_value(json_object_get(v, "host")) ?: "-");
		/* A replica kept here (docs/replica.md): off until a failover. */
		snprintf(state, sizeof(state), "%s%s", json_object_get(v, "replica") ? "replica" :
			 json_string_value(json_object_get(v, "state")) ?: "?",
			 json_is_true(json_object_get(v, "stale")) ? "?" : "");
		stale |= json_is_true(json_object_get(v, "stale"));
		printf("%-24s %-9s %4lld %8s %9s %-9s %s\n",
		       json_string_value(json_object_get(v, "name")), state,
		       (long long)json_integer_value(json_object_get(v, "cpus")), mem, up,
		       json_is_true(json_object_get(v, "autostart")) ? "yes" : "no",
		       json_string_value(json_object_get(v, "uuid")));
	}
	if (stale)
		printf("(state?: as last seen; this host cannot reach the pool's etcd)\n");
}

/* Commands ---------------------------------------------------------------- */

int cmd_list(struct client *c, int argc, char **argv)
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

int cmd_create(struct client *c, int argc, char **argv)
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
	return print_reply(c, out, "%s defined (uuid %s)\n", argv[1],
	                   json_string_value(json_object_get(out, "uuid")));
}

int cmd_set(struct client *c, int argc, char **argv)
{
	json_t *body = json_object(), *out = NULL, *qos, *np, *target;
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
	np = json_incref(json_object_get(body, "\x03nic_policy"));
	json_object_del(body, "\x03nic_policy");
	json_array_foreach(np, i, q)
	{
		if (ret)
			break;
		ret = nic_policy_apply(c, argv[1], json_string_value(json_array_get(q, 0)),
		                       json_string_value(json_array_get(q, 1)));
	}
	if (!ret && np && !json_object_size(body)) {
		json_decref(np);
		json_decref(body);
		return EXIT_OK;
	}
	json_decref(np);
	target = json_incref(json_object_get(body, "\x02target_mib"));
	json_object_del(body, "\x02target_mib");
	if (!ret && target) {
		json_t *req = json_pack("{s:O}", "target_mib", target), *bal = NULL;

		vm_path(path, sizeof(path), argv[1], "/balloon");
		ret = client_call(c, "PUT", path, req, &bal);
		json_decref(req);
		if (!ret)
			ret = print_reply(c, bal, "%s: balloon target %lld MiB\n", argv[1],
					  (long long)json_integer_value(target));
		if (!ret && !json_object_size(body)) {
			json_decref(target);
			json_decref(body);
			return EXIT_OK;
		}
	}
	json_decref(target);
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
	return print_reply(c, out, "%s changed\n", argv[1]);
}

/* GET a VM resource (suffix "" for the VM itself) and print it. */
static int show_vm_resource(struct client *c, int argc, char **argv, const char *suffix)
{
	json_t *out;
	int ret = vm_call(c, argc, argv, "GET", suffix, &out);

	if (ret)
		return ret;
	show_json(c, out);
	json_decref(out);
	return EXIT_OK;
}

int cmd_show(struct client *c, int argc, char **argv)
{
	return show_vm_resource(c, argc, argv, "");
}

int cmd_metrics(struct client *c, int argc, char **argv)
{
	return show_vm_resource(c, argc, argv, "/metrics");
}

/* vm start NAME [--host H]: in a pool the reply says where placement put
 * it and why. */
int cmd_start(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"host", required_argument, NULL, O_HOST},
	    {NULL, 0, NULL, 0},
	};
	json_t *body = json_object(), *out = NULL, *pl;
	char path[512];
	int o, ret;

	if (need_name(argc, argv, 2)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != O_HOST) {
			json_decref(body);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
		json_object_set_new(body, "host", json_string(optarg));
	}
	vm_path(path, sizeof(path), argv[1], "/start");
	ret = client_call(c, "POST", path, json_object_size(body) ? body : NULL, &out);
	json_decref(body);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
	} else {
		printf("%s started (state: %s)\n", argv[1],
		       json_string_value(json_object_get(out, "state")) ?: "?");
		if ((pl = json_object_get(out, "placement")))
			printf("host %s: %s\n", json_string_value(json_object_get(pl, "host")) ?: "?",
			       json_string_value(json_object_get(pl, "reason")) ?: "");
	}
	json_decref(out);
	return 0;
}

int cmd_kill(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "POST", "/kill", "turned off");
}

int cmd_reset(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "POST", "/reset", "reset");
}

int cmd_pause(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "POST", "/pause", "paused");
}

int cmd_resume(struct client *c, int argc, char **argv)
{
	return vm_verb(c, argc, argv, "POST", "/resume", "resumed");
}

int cmd_delete(struct client *c, int argc, char **argv)
{
	int ret = vm_call(c, argc, argv, "DELETE", "", NULL);

	if (!ret && !c->json)
		printf("%s deleted\n", argv[1]);
	return ret;
}

/* Graceful stop: asks, then waits for stopped (unless --no-wait). */
int cmd_stop(struct client *c, int argc, char **argv)
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
	ret = client_send(c, "POST", path, body, &out);
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
