/* main.c: cella, the command line for cellad: the command table (`cella vm
 * ...` in vm.c, checkpoint.c, move.c, console.c; `cella host ...`, `cella pool
 * ...` in pool.c, `cella events`, `cella completion bash`), help, global options and dispatch.
 * Human tables by default, --json for scripts; exit statuses in client.h. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int cmd_host(struct client *c, int argc, char **argv)
{
	json_t *out;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = client_call(c, "GET", "/v1/host", NULL, &out);
	if (!ret) {
		show_json(c, out);
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
    {"vm", "create", "new define", "NAME --kernel FILE | --image IMG [OPTIONS]",
     "define a VM (New-VM, virsh define)", cmd_create, vm_create_opts_help},
    {"vm", "show", "info dominfo", "NAME", "show a VM's definition and state", cmd_show, NULL},
    {"vm", "start", "restore", "NAME [--host H]",
     "start a VM; a saved VM resumes from its saved state "
     "(Start-VM, virsh start / virsh restore); in a pool, placement picks the host",
     cmd_start, "  --host H      in a pool: start it on host H (placement still checks it)\n"},
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
     cmd_set, vm_set_opts_help},
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
     "  --to HOST          the destination: a host of this host's pool (no storage\n"
     "                     copied for disks on pool storage), or a peer (cella host add)\n"
     "  --quick            quick migration: save here, send the state, restore there\n"
     "  --include-storage  the disks go too (quick: copied; live: needs the worker's\n"
     "                     storage migration); default: shared storage, same paths\n"
     "  --downtime MS      live: the longest pause the last round may take (default 300)\n"
     "  --max-bandwidth B  live: bytes per second at most (default: no limit)\n"},
    {"host", "info", "", "", "the host and cellad (Get-VMHost)", cmd_host, NULL},
    {"host", "add", "", "NAME --url URL (--token T | --token-file F) [--tls-name N]",
     "name a peer host VMs can move to: its cellad's TCP API and bearer token", cmd_host_add,
     "  --url URL          the peer cellad's TCP API, https://ADDRESS:PORT\n"
     "  --token T, --token-file F  its bearer token\n"
     "  --tls-name N       the name its migration certificate carries (default: the\n"
     "                     URL's address)\n"},
    {"host", "list", "ls", "", "the peer hosts VMs can move to", cmd_host_list, NULL},
    {"host", "remove", "rm delete", "NAME", "forget a peer host", cmd_host_remove, NULL},
    {"host", "metrics", "", "", "Prometheus text for every VM", cmd_prometheus, NULL},
    {"switch", "create", "", "NAME --type external --uplink IF | internal [--address CIDR] | "
     "private [--stateful]", "create a virtual switch: a Linux bridge; external: IF attached; "
     "internal: the host on it (with CIDR); private: VMs only (admin)", cmd_switch_create,
     "  --type T           external, internal or private\n"
     "  --uplink IF        external: the host interface to attach (in no bridge)\n"
     "  --address CIDR     internal: the host's address on the switch, e.g. 10.0.0.1/24\n"
     "  --stateful         its ports' ACLs pass the replies of the flows they allow\n"
     "                     (a policy's \"stateful\" overrides it)\n"},
    {"switch", "list", "ls", "", "this host's switches and their bridges", cmd_switch_list, NULL},
    {"switch", "show", "", "NAME", "a switch, its VMs and ports", cmd_switch_show, NULL},
    {"switch", "delete", "rm remove", "NAME", "delete a switch no VM uses (admin)",
     cmd_switch_delete, NULL},
    {"user", "add", "", "NAME --role viewer|operator|admin",
     "add a web console user (or give one a new password or role, ending their sessions); "
     "the password is read from stdin (a prompt without echo on a terminal) and stored as "
     "an Argon2id hash (admin)", cmd_user_add, NULL},
    {"user", "list", "ls", "", "the web console's users and their roles (admin)",
     cmd_user_list, NULL},
    {"user", "delete", "rm remove", "NAME", "delete a web console user; their sessions end "
     "(admin)", cmd_user_delete, NULL},
    {"image", "list", "ls", "[LOCATION]",
     "the images of cellad's storage locations: format, sizes, backing file, users, jobs",
     cmd_image_list, NULL},
    {"image", "create", "", "LOCATION/NAME [SIZE] [-f raw|qcow2] [--backing NAME]",
     "a new image in a storage location (qcow2 by default; SIZE like 10G; over a backing "
     "image of the same location, its size by default)", cmd_image_create, NULL},
    {"image", "resize", "grow", "[LOCATION/]NAME SIZE",
     "grow an image no running VM uses and no image is backed by", cmd_image_resize, NULL},
    {"image", "convert", "", "[LOCATION/]NAME [LOCATION/]TARGET -O raw|qcow2 [--wait]",
     "a new image with NAME's content, its chain flattened (a job in cellad)",
     cmd_image_convert, NULL},
    {"image", "backup", "", "[LOCATION/]NAME [LOCATION/]TARGET [-O FMT] [--point P [--since S]] "
     "[--wait]", "a full copy; with --point (a VM disk with cbt) a full raw backup starting "
     "P, with --since an incremental since S (a job in cellad)", cmd_image_backup, NULL},
    {"image", "delete", "rm remove", "[LOCATION/]NAME",
     "delete an image no VM uses and no image is backed by", cmd_image_delete, NULL},
    {"host", "maintenance", "", "HOST on|off",
     "maintenance mode for a host of the pool: on moves every VM off it (live, a few at a "
     "time; stopped ones on pool storage handed over) and keeps new ones off; prints the "
     "plan, what moved and what stays; off: up again",
     cmd_host_maintenance, NULL},
    {"pool", "create", "", "NAME --etcd URL[,URL...] --ca-cert FILE --ca-key FILE [OPTIONS]",
     "make this host the first of a new pool on an etcd cluster that trusts the pool's CA; "
     "prints a join token for the next host", cmd_pool_create,
     "  --etcd URL,...     the etcd members (https://HOST:PORT; mutual TLS with the CA)\n"
     "  --ca-cert FILE     the pool's CA certificate (PEM; etcd's trusted CA too)\n"
     "  --ca-key FILE      its key: kept on this host, which then admits other hosts\n"
     "  --address URL      this host's TCP API as other hosts reach it (https://IP:PORT)\n"
     "  --host NAME        this host's name in the pool (default: its host name)\n"
     "  --lease-ttl S      seconds a host stays up without renewing its lease (default 10)\n"
     "  --token-ttl S      seconds the join token is valid (default 3600)\n"},
    {"pool", "token", "", "[--ttl S]",
     "a new join token (shown once, used once; default valid 3600 s)", cmd_pool_token,
     "  --ttl S            seconds it is valid (60 to 604800)\n"},
    {"pool", "join", "", "ADDRESS --token T [--address URL] [--host NAME]",
     "join the pool of the host at ADDRESS (one holding the pool's CA key) with a token from "
     "cella pool token; this host's certificate comes from the pool's CA",
     cmd_pool_join,
     "  --token T          the join token (it also pins the pool's CA)\n"
     "  --address URL      this host's TCP API as other hosts reach it (https://IP:PORT)\n"
     "  --host NAME        this host's name in the pool (default: its host name)\n"},
    {"pool", "status", "", "[--json]",
     "the pool's hosts: state (up, maintenance, down), capacity and VMs (needs a pool: "
     "docs/pool.md)", cmd_pool_status, NULL},
    {"pool", "balance", "", "[--dry-run] [--json]",
     "even out the pool's memory and CPU load by live moves (DRS-like): prints the plan "
     "with a reason per move and the imbalance before and after, then carries it out",
     cmd_pool_balance, "  --dry-run          print the plan only: nothing moves\n"},
    {"pool", "leave", "", "",
     "take this host out of its pool; refused while it owns VMs", cmd_pool_leave, NULL},
    {"replica", "enable", "", "NAME --to HOST [--interval D] [--keep N|--keep-for D] [--consistent-every K] [--max-bandwidth B] [--compression zstd|none]",
     "replicate a running VM to a peer host: every interval, what changed on its disks "
     "becomes a recovery point there (Enable-VMReplication)", cmd_replica_enable,
     "  --to HOST          the target: a peer (cella host add) or a host of this pool\n"
     "  --interval D       how often: 1s to 24h, e.g. 5s, 30s, 5m (default 5s)\n"
     "  --keep N           recovery points the target keeps (default 24)\n"
     "  --keep-for D       or: points younger than D, e.g. 30m, 24h (the latest stays)\n"
     "  --consistent-every K  every K-th point after the disks are flushed (flush-disks)\n"
     "  --max-bandwidth B  bytes per second, e.g. 20M: caps each disk's export and upload\n"
     "  --compression C    zstd (default) or none: the change sets on the wire\n"},
    {"replica", "status", "", "NAME",
     "a VM's replication: target, last point, lag, health (Measure-VMReplication)",
     cmd_replica_status, NULL},
    {"replica", "disable", "", "NAME", "stop replicating a VM; the target keeps its replica",
     cmd_replica_disable, NULL},
    {"replica", "pause", "", "NAME",
     "pause a VM's replication: its settings and last point stay, nothing is sent "
     "(Suspend-VMReplication)", cmd_replica_pause, NULL},
    {"replica", "resume", "", "NAME", "resume a paused replication from its last point",
     cmd_replica_resume, NULL},
    {"replica", "list", "ls", "", "the replicas this host keeps for other hosts",
     cmd_replica_list, NULL},
    {"replica", "show", "", "NAME", "a replica's disks and recovery points",
     cmd_replica_show, NULL},
    {"replica", "points", "", "NAME",
     "a replica's recovery points: cut time, size, consistency (flushed or crash)",
     cmd_replica_points, NULL},
    {"replica", "failover", "", "NAME [--point P] [--no-start] [--test] | NAME --planned [...]",
     "define the VM here on a recovery point (the latest every disk has, or P) and start it "
     "(Start-VMFailover); with --planned, on the source: shut the VM down, send its last "
     "changes, fail over to them and replicate back here", cmd_replica_failover,
     "  --point P          the recovery point (cella replica show NAME)\n"
     "  --no-start         define it, do not start it\n"
     "  --test             a copy NAME-test without network, while replication goes on\n"
     "                     (Test-VMReplication); cella replica test-stop NAME ends it\n"
     "  --planned          on the source: a planned failover, nothing lost\n"
     "  --shutdown-timeout S  with --planned: seconds the guest has to shut down (default\n"
     "                     120; --timeout S too); a guest that does not: the failover is\n"
     "                     abandoned, the VM runs on here untouched\n"
     "  --force            with --planned: turn a guest that did not shut down off after\n"
     "                     the timeout, and fail over (every block it wrote is sent)\n"
     "  --no-reverse       with --planned: do not replicate back (cella replica reverse)\n"
     "  --reverse-to HOST  with --planned: this host's name on the target (default: its\n"
     "                     host name)\n"},
    {"replica", "reverse", "", "NAME [--to HOST] [--interval D] [--keep N] [--compression C]",
     "after a failover to this host: replicate the VM back to its old primary, since the "
     "point it failed over to when that host can vouch for it, else from a full copy",
     cmd_replica_reverse,
     "  --to HOST          the old primary (cella host list; default: the replica's source)\n"
     "  --interval D, --keep N, --max-bandwidth B, --compression C: as for enable\n"},
    {"replica", "test-stop", "", "NAME", "end a test failover: its VM and layers go",
     cmd_replica_test_stop, NULL},
    {"replica", "delete", "rm remove", "NAME", "delete a replica and its points",
     cmd_replica_delete, NULL},
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
	    "    COMPREPLY=($(compgen -W 'vm host pool events completion help --json --socket --url "
	    "--token-file --help --version replica disk' -- \"$cur\")); return\n"
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
	    "      COMPREPLY=($(compgen -W '--kernel --image --initrd --cmdline --cpus --memory --disk "
	    "--nic --net --rng --no-rng --balloon --no-balloon --balloon-target --dynamic-memory --no-dynamic-memory --vsock --no-vsock --vsock-cid --autostart --no-autostart --restart --cpu-weight --cpu-max "
	    "--timeout --no-wait --history --no-follow --disk-qos --to --quick --include-storage "
	    "--downtime --max-bandwidth --memory-merge --no-memory-merge --hugepages "
	    "--no-hugepages --prealloc --no-prealloc --thp --no-thp --help' -- \"$cur\"))\n"
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
	    "      COMPREPLY=($(compgen -W 'info metrics add list remove maintenance' -- \"$cur\"))\n"
	    "    elif [ $COMP_CWORD -eq 4 ] && [ \"${COMP_WORDS[2]}\" = maintenance ]; then\n"
	    "      COMPREPLY=($(compgen -W 'on off' -- \"$cur\"))\n"
	    "    elif [ $COMP_CWORD -eq 3 ] && [ \"${COMP_WORDS[2]}\" = remove ]; then\n"
	    "      COMPREPLY=($(compgen -W \"$(cella --socket \"$sock\" host list 2>/dev/null "
	    "| awk 'NR>1{print $1}')\" -- \"$cur\"))\n"
	    "    else\n"
	    "      COMPREPLY=($(compgen -W '--url --token --token-file --tls-name --help' -- "
	    "\"$cur\"))\n"
	    "    fi;;\n"
	    "  pool) [ $COMP_CWORD -eq 2 ] && COMPREPLY=($(compgen -W 'create token join status balance leave' -- \"$cur\"));;\n"
	    "  replica) [ $COMP_CWORD -eq 2 ] && COMPREPLY=($(compgen -W 'enable status disable pause resume list show points failover test-stop delete' -- \"$cur\"));;\n"
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
	fputs("Usage: cella [--socket PATH | --url URL --token-file FILE [--ca FILE]] [--json] COMMAND...\n"
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
	      "  --url URL          reach cellad over TCP instead (HTTPS: https://host:8419)\n"
	      "  --ca FILE          the CA of cellad's certificate (with --url)\n"
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
			if (strncmp(c.url, "https://", 8)) {
				fprintf(stderr, "cella: --url: cellad's TCP API is HTTPS only "
					"(https://HOST:PORT)\n");
				return EXIT_USAGE;
			}
		} else if (i + 1 < argc && !strcmp(argv[i], "--ca")) {
			c.ca = argv[++i];
		} else if (i + 1 < argc && !strcmp(argv[i], "--token-file")) {
			if (read_token_file(argv[++i], token_buf, sizeof(token_buf)))
				return EXIT_USAGE;
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
	if (!strcmp(argv[i], "vm") || !strcmp(argv[i], "host") || !strcmp(argv[i], "checkpoint") ||
	    !strcmp(argv[i], "pool") || !strcmp(argv[i], "replica") || !strcmp(argv[i], "user") ||
	    !strcmp(argv[i], "switch") ||
	    !strcmp(argv[i], "image")) {
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
