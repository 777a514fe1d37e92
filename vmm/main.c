/* main.c: cella-vm, the per-VM worker process: parse the configuration, build
 * the VM, run it, and exit with a status that says how the VM ended. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/emul/emul.h"
#include "arch/x86/x86.h"
#include "backend/tap.h"
#include "config.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include <linux/virtio_config.h>
#include "control/control.h"
#include "conf/schema.h"
#include "devtype.h"
#include "fdspec.h"
#include "log.h"
#include "migrate/migrate.h"
#include "migrate/mig_tls.h"
#include "virtio/blk/blk_ctl.h"
#include "sandbox/sandbox.h"
#include "mem_prefetch.h"
#include "restore.h"
#include "standby.h"
#include "state/memorder.h"
#include "state/statefile.h"
#include "vcpu.h"
#include "vm.h"

/* Worker options beyond the VM configuration (cellad passes these). */
struct worker_opts {
	const char *config;    /* --config FILE|fd:N */
	bool stats;
	const char *control;   /* --control PATH|fd:N */
	const char *exit_file;
	const char *name;
	bool wait_start;
	bool seccomp;
	bool sandbox;
	struct sandbox_ids sandbox_ids;
	bool test_probe;
	const char *incoming;  /* --incoming tcp:ADDR:PORT|fd:N (live migration target) */
	const char *tls_cert, *tls_key, *tls_ca, *tls_peer;
	const char *restore;   /* --restore FILE|fd:N */
};

#define DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1 pci=off i8042.noaux i8042.nomux " \
			"i8042.nopnp i8042.dumbkbd"

static void usage(FILE *f)
{
	fputs("Usage: cella-vm [OPTIONS]\n"
	      "Run one virtual machine on KVM.\n\n"
	      "  --config FILE        JSON configuration (flags below override or extend it)\n"
	      "  --kernel FILE        bzImage, vmlinux or PVH ELF kernel\n"
	      "  --initrd FILE        initial ramdisk\n"
	      "  --cmdline STR        kernel command line (default: \"" DEFAULT_CMDLINE "\")\n"
	      "  --cpus N             vCPUs, 1 to 32 (default 1)\n"
	      "  --cpus-max N         vCPU hot-plug up to N (needs ACPI, on by default; control command\n"
	      "                       cpus-set, docs/guests.md)\n"
	      "  --mem MIB            memory in MiB (default 128)\n"
	      "  --disk PATH[,ro][,id=ID][,format=raw|qcow2][,iops=N][,iops_burst=N][,bps=N]\n"
	      "         [,bps_burst=N][,cbt=on][,backing=fd:N[:NAME]...][,cbt_file=FILE]\n"
	      "                       virtio-blk disk (repeatable; docs/storage.md)\n"
	      "  --net tap=NAME[,tap_fd=fd:N][,mac=MAC][,vlan=N|trunk][,mtu=N][,queues=N]  virtio-net NIC on a tap device\n"
	      "                       (repeatable); tap_fd: the tap already attached by the\n"
	      "                       caller (checked to be NAME with a vnet header; cellad\n"
	      "                       passes taps so), NAME still derives the default MAC;\n"
	      "                       with queues=N, fd:N+fd:M+..., one per queue\n"
	      "  --kvm PATH|fd:N      the KVM device (default /dev/kvm; cellad passes it open)\n"
	      "  --userfaultfd PATH|fd:N  /dev/userfaultfd for --restore (default: the node, then\n"
	      "                       the system call; without one the file is mapped copy-on-write)\n"
	      "  --rng                virtio-rng device\n"
	      "  --acpi, --no-acpi    ACPI tables for the guest (RSDP, MADT, DSDT with the\n"
	      "                       devices, power button, S5; default on), or the MP\n"
	      "                       table only (a Linux kernel without CONFIG_ACPI needs\n"
	      "                       --no-acpi or acpi=off on its command line)\n"
	      "  --device TYPE,KEY=VALUE,...  a device of a registered type (repeatable;\n"
	      "                       the types and their keys are listed below)\n"
	      "  --console KIND       stdio (default), none, file:PATH or unix:PATH (PATH may be\n"
	      "                       fd:N, a listening socket the caller bound)\n"
	      "  --stats              log exit counts and memory use when the VM ends\n"
	      "  --pause-on-unhandled an instruction neither KVM nor the VMM can carry out\n"
	      "                       pauses the VM (default with --control) instead of\n"
	      "                       ending it with status 10\n"
	      "  --no-emulation-fallback  never emulate in the VMM what KVM cannot (such an\n"
	      "                       instruction then stops the VM; the decoder is not loaded)\n"
	      "  --name NAME          the VM's name (logs, control status)\n"
	      "  --control PATH|fd:N  serve the JSON-lines control socket (docs/cellad.md)\n"
	      "  --exit-file PATH     record how the VM ended there (JSON) on exit\n"
	      "  --wait-start         run the vCPUs only once a control client sends start\n"
	      "  --sandbox[=USER|UID:GID|userns|userns-shared]  after setup: new mount, IPC,\n"
	      "                       UTS and network namespaces with an empty read-only\n"
	      "                       root, no capability bounding set, rlimits, then run as\n"
	      "                       USER or UID:GID (a per-VM identity; default: keep the\n"
	      "                       uid). userns: the caller started this process as uid 0\n"
	      "                       of a user namespace that maps it to a per-VM uid (cellad\n"
	      "                       does); it stays uid 0 there and drops every capability\n"
	      "                       (userns-shared: the mapped uid is shared, no NPROC limit)\n"
	      "  --seccomp            install the system-call allowlist before the vCPUs run\n"
	      "  --restore FILE|fd:N  start from a state file written by the save command\n"
	      "                       (same configuration options as the saved VM)\n"
	      "  --standby [--kvm PATH|fd:N] [--mem MIB]  (first option) open KVM,\n"
	      "                       log \"standby: ready\", then read one line on stdin:\n"
	      "                       a JSON array of the --restore arguments, and restore\n"
	      "                       (docs/state-format.md);\n"
	      "                       --mem: the VM's memory slots, irqchip and PIT made ready\n"
	      "                       for a guest of MIB MiB (used when the request's fits)\n"
	      "  --incoming tcp:ADDR:PORT|fd:N  be the destination of a live migration:\n"
	      "                       wait for the source there, receive the VM, run it\n"
	      "                       (same configuration options as the source VM)\n"
	      "  --tls-cert F, --tls-key F, --tls-ca F  this worker's certificate and key and\n"
	      "                       the CA that signed the source's (PEM files)\n"
	      "  --tls-peer NAME      the source certificate's expected name (default: any\n"
	      "                       certificate the CA signed)\n"
	      "  --help, --version\n\n"
	      "Every FILE or PATH above may be fd:N, a descriptor the caller opened (cellad\n"
	      "passes a VM's files so). A disk given so takes its backing chain as\n"
	      "descriptors too, in chain order, each with the backing name its upper image\n"
	      "must give (--disk fd:5,backing=fd:6:base.qcow2,backing=fd:7:base.raw; JSON\n"
	      "\"backing\": [{\"fd\": 6, \"name\": \"base.qcow2\"}, ...]), and its tracking\n"
	      "file as cbt_file=fd:N (JSON \"cbt_file\": \"fd:N\").\n\n"
	      "Exit status: 0 guest power-off, 2 configuration error, 4 VMM error,\n"
	      "6 guest crash (triple fault), 8 guest reset, 10 unhandled guest instruction,\n"
	      "12 stopped by SIGTERM/SIGINT, 14 state saved (save command);\n"
	      "(v << 1) | 1 when the guest writes v to port 0xf4.\n",
	      f);
	/* What --device takes: each registered type's own keys (devtype.h). */
	fputs("\nDevice types for --device (JSON: \"devices\": [{\"type\": TYPE, KEY: VALUE}]):\n", f);
	for (unsigned i = 0; i < nr_device_types; i++) {
		const struct device_type *t = device_types[i];
		char keys[320];

		if (!t->config_schema)
			continue;
		conf_usage(t->config_schema, keys, sizeof(keys));
		fprintf(f, "  %-20s %s (at most %u)\n", t->name, keys, t->max_instances);
	}
}

static int parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "cella-vm: %s: expected a number, got '%s'\n", opt, s);
		return -EINVAL;
	}
	if (v < min || v > max) {
		fprintf(stderr, "cella-vm: %s: %llu is out of range (%llu to %llu)\n", opt, v,
			(unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static char *dup_or_die(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		fputs("cella-vm: out of memory\n", stderr);
		exit(WORKER_EXIT_ERROR);
	}
	return p;
}

/* Parse argv into cfg. Returns 0, 1 for --help/--version (exit 0), or -EINVAL. */
static int parse_args(int argc, char **argv, struct vm_config *cfg, struct worker_opts *wo)
{
	enum { OPT_CONFIG = 256, OPT_KERNEL, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEM,
	       OPT_DISK, OPT_NET, OPT_RNG, OPT_CPUS_MAX, OPT_ACPI, OPT_NO_ACPI, OPT_DEVICE, OPT_CONSOLE, OPT_STATS, OPT_NO_EMUL, OPT_PAUSE_UNHANDLED, OPT_HELP, OPT_VERSION,
	       OPT_NAME, OPT_CONTROL, OPT_EXIT_FILE, OPT_WAIT_START, OPT_SANDBOX, OPT_SECCOMP,
	       OPT_TEST_PROBE, OPT_RESTORE, OPT_KVM, OPT_USERFAULTFD,
	       OPT_INCOMING, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_CA, OPT_TLS_PEER };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "cpus-max", required_argument, NULL, OPT_CPUS_MAX },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "net", required_argument, NULL, OPT_NET },
		{ "rng", no_argument, NULL, OPT_RNG },
		{ "acpi", no_argument, NULL, OPT_ACPI },
		{ "no-acpi", no_argument, NULL, OPT_NO_ACPI },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ "no-emulation-fallback", no_argument, NULL, OPT_NO_EMUL },
		{ "pause-on-unhandled", no_argument, NULL, OPT_PAUSE_UNHANDLED },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "exit-file", required_argument, NULL, OPT_EXIT_FILE },
		{ "wait-start", no_argument, NULL, OPT_WAIT_START },
		{ "sandbox", optional_argument, NULL, OPT_SANDBOX },
		{ "seccomp", no_argument, NULL, OPT_SECCOMP },
		{ "test-probe", no_argument, NULL, OPT_TEST_PROBE }, /* tests only: see control.h */
		{ "restore", required_argument, NULL, OPT_RESTORE },
		{ "kvm", required_argument, NULL, OPT_KVM },
		{ "userfaultfd", required_argument, NULL, OPT_USERFAULTFD },
		{ "incoming", required_argument, NULL, OPT_INCOMING },
		{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
		{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
		{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
		{ "tls-peer", required_argument, NULL, OPT_TLS_PEER },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	char err[512];
	uint64_t v;
	int c;

	/* The config file is read first so that flags override it. */
	for (int i = 1; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--config")) {
			if (config_load_json(cfg, argv[i + 1], err, sizeof(err))) {
				fprintf(stderr, "cella-vm: config: %s\n", err);
				return -EINVAL;
			}
		}
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int ret = 0;

		switch (c) {
		case OPT_CONFIG:
			wo->config = optarg;
			break;
		case OPT_KVM:
			free(cfg->kvm);
			cfg->kvm = dup_or_die(optarg);
			break;
		case OPT_USERFAULTFD:
			free(cfg->userfaultfd);
			cfg->userfaultfd = dup_or_die(optarg);
			break;
		case OPT_KERNEL:
			free(cfg->kernel);
			cfg->kernel = dup_or_die(optarg);
			break;
		case OPT_INITRD:
			free(cfg->initrd);
			cfg->initrd = dup_or_die(optarg);
			break;
		case OPT_CMDLINE:
			free(cfg->cmdline);
			cfg->cmdline = dup_or_die(optarg);
			break;
		case OPT_CPUS:
			ret = parse_uint("--cpus", optarg, 1, CONFIG_MAX_CPUS, &v);
			cfg->cpus = (unsigned)v;
			break;
		case OPT_CPUS_MAX:
			ret = parse_uint("--cpus-max", optarg, 1, CONFIG_MAX_CPUS, &v);
			cfg->cpus_max = (unsigned)v;
			break;
		case OPT_MEM:
			ret = parse_uint("--mem", optarg, CONF_MIN_MEM_MIB, CONF_MAX_MEM_MIB, &v);
			cfg->mem_mib = v;
			break;
		case OPT_DISK:
			if ((ret = config_add_disk(cfg, optarg, err, sizeof(err))))
				fprintf(stderr, "cella-vm: --disk: %s\n", err);
			break;
		case OPT_NET:
			if ((ret = config_add_net(cfg, optarg, err, sizeof(err))))
				fprintf(stderr, "cella-vm: --net: %s\n", err);
			break;
		case OPT_RNG:
			cfg->rng = true;
			break;
		case OPT_ACPI:
			cfg->acpi = true;
			break;
		case OPT_NO_ACPI:
			cfg->acpi = false;
			break;
		case OPT_DEVICE:
			if ((ret = config_add_device(cfg, optarg, err, sizeof(err))))
				fprintf(stderr, "cella-vm: --device: %s\n", err);
			break;
		case OPT_STATS:
			wo->stats = true;
			break;
		case OPT_NO_EMUL:
			cfg->emulation_fallback = false;
			break;
		case OPT_PAUSE_UNHANDLED:
			cfg->pause_on_unhandled = true;
			break;
		case OPT_NAME:
			wo->name = optarg;
			break;
		case OPT_CONTROL:
			wo->control = optarg;
			break;
		case OPT_EXIT_FILE:
			wo->exit_file = optarg;
			break;
		case OPT_WAIT_START:
			wo->wait_start = true;
			break;
		case OPT_SANDBOX:
			wo->sandbox = true;
			ret = sandbox_parse_ids(optarg, &wo->sandbox_ids);
			break;
		case OPT_SECCOMP:
			wo->seccomp = true;
			break;
		case OPT_TEST_PROBE:
			wo->test_probe = true;
			break;
		case OPT_RESTORE:
			wo->restore = optarg;
			break;
		case OPT_INCOMING:
			wo->incoming = optarg;
			break;
		case OPT_TLS_CERT:
			wo->tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			wo->tls_key = optarg;
			break;
		case OPT_TLS_CA:
			wo->tls_ca = optarg;
			break;
		case OPT_TLS_PEER:
			wo->tls_peer = optarg;
			break;
		case OPT_CONSOLE:
			if ((ret = config_set_console(cfg, optarg, err, sizeof(err))))
				fprintf(stderr, "cella-vm: --console: %s\n", err);
			break;
		case OPT_HELP:
			usage(stdout);
			return 1;
		case OPT_VERSION:
			puts("cella-vm 0.1.0");
			return 1;
		case ':':
			fprintf(stderr, "cella-vm: %s needs a value\n", argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "cella-vm: unknown option '%s' (see --help)\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (ret)
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "cella-vm: unexpected argument '%s' (see --help)\n", argv[optind]);
		return -EINVAL;
	}
	/* A supervised worker keeps a VM that met an unhandled instruction
	 * paused for inspection; a bare one has nobody to inspect it. */
	if (wo->control)
		cfg->pause_on_unhandled = true;
	if (wo->incoming && (wo->wait_start || wo->restore)) {
		fputs("cella-vm: --incoming runs the VM as soon as it has arrived: it goes with "
		      "neither --wait-start nor --restore\n", stderr);
		return -EINVAL;
	}
	if (wo->wait_start && !wo->control) {
		fputs("cella-vm: --wait-start needs --control\n", stderr);
		return -EINVAL;
	}
	if (!cfg->cmdline)
		cfg->cmdline = dup_or_die(DEFAULT_CMDLINE);
	if (config_validate(cfg, err, sizeof(err)) ||
	    x86_check_kernel(cfg->kernel, err, sizeof(err))) {
		fprintf(stderr, "cella-vm: %s\n", err);
		return -EINVAL;
	}
	return 0;
}

/* Log the vCPU exit counts and the process's memory high-water marks. The
 * RssShmem part is guest RAM the guest touched (memfd pages); the rest is the
 * VMM's own footprint. */
static void log_stats(const struct vm *vm)
{
	uint64_t io = 0, mmio = 0, other = 0;
	char line[256], mem[256] = "";
	FILE *f;

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		io += vm->vcpus[i].exits_io;
		mmio += vm->vcpus[i].exits_mmio;
		other += vm->vcpus[i].exits_other;
	}
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "VmHWM:", 6) || !strncmp(line, "RssAnon:", 8) ||
		    !strncmp(line, "RssFile:", 8) || !strncmp(line, "RssShmem:", 9)) {
			char key[32];
			unsigned long kb;

			if (sscanf(line, "%31s %lu", key, &kb) == 2) {
				size_t n = strlen(mem);

				snprintf(mem + n, sizeof(mem) - n, " %s%lu", key, kb);
			}
		}
	}
	if (f)
		fclose(f);
	log_info("stats: exits io=%llu mmio=%llu other=%llu; memory (KiB):%s",
		 (unsigned long long)io, (unsigned long long)mmio, (unsigned long long)other, mem);
	{
		/* Emulation failures the VMM handled (vmm/arch/x86/emul), by kind. */
		uint64_t total = 0, kinds[EMUL_KIND_COUNT] = { 0 };
		char by[256] = "";
		size_t n = 0;

		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			total += vm->vcpus[i].emul_handled;
			for (unsigned k = 0; k < EMUL_KIND_COUNT; k++)
				kinds[k] += vm->vcpus[i].emul_by_kind[k];
		}
		for (unsigned k = 0; k < EMUL_KIND_COUNT; k++)
			if (kinds[k] && n < sizeof(by))
				n += (size_t)snprintf(by + n, sizeof(by) - n, " %s=%llu",
						      emul_kind_name((enum emul_kind)k),
						      (unsigned long long)kinds[k]);
		log_info("stats: emulation failures handled=%llu%s", (unsigned long long)total, by);
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		log_info("stats: vCPU %u: %llu exits, stopped at RIP 0x%llx", i,
			 (unsigned long long)(vm->vcpus[i].exits_io + vm->vcpus[i].exits_mmio +
					      vm->vcpus[i].exits_other + vm->vcpus[i].emul_handled),
			 (unsigned long long)vm->vcpus[i].last_rip);
	/* Whether each virtio device's driver got as far as DRIVER_OK: the host's
	 * evidence that the guest probed it (tests read this). */
	for (const struct device *d = vm->devices; d; d = d->next) {
		const struct device_type *t = devtype_of(d);
		const struct virtio_dev *vd;

		if (!t || t->transport != DEVTYPE_VIRTIO_MMIO)
			continue;
		vd = container_of(d, const struct virtio_dev, dev);
		log_info("stats: %s: status 0x%x%s", vd->name, vd->status,
			 (vd->status & VIRTIO_CONFIG_S_DRIVER_OK) ? " (driver ready)" : "");
	}
}

/* SIGTERM/SIGINT arrive through a signalfd on the I/O loop. */
static void on_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;
	int fd = vm->signal_fd;

	(void)events;
	if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		vm_request_exit(vm, WORKER_EXIT_STOPPED, "stopped by signal %s",
				strsignal((int)si.ssi_signo));
}

/* After vm_setup: the control socket, the sandbox, serving control (with
 * the start gate) and the seccomp filter, in that order (the filter last,
 * so that setting up the rest needs no allowance). pre: the filters a standby
 * worker compiled ahead (NULL: none), of which the thread filters used are
 * taken and the rest freed once the process filter is in. 0 or -errno
 * (logged). */
static int worker_prepare(struct vm *vm, const struct worker_opts *wo, struct control **ctl,
			  struct sandbox_filters *pre)
{
	int ret;

	if (wo->control) {
		struct control_opts co = { .spec = wo->control, .exit_file = wo->exit_file,
					   .name = wo->name, .test_probe = wo->test_probe };

		ret = control_create(ctl, vm, &co);
		if (ret)
			return ret;
	}
	phase_mark(vm->trace, "control");
	/* The sandbox hides the file system, and the threads' seccomp filters
	 * let no vCPU thread open a library (and the migration sender's opens
	 * answer ENOENT): load what may be needed later first. */
	if (wo->sandbox || wo->seccomp)
		vcpus_preload_emulation(vm);
	phase_mark(vm->trace, "decoder");
	if ((wo->sandbox || wo->seccomp) && (wo->control || wo->incoming)) {
		/* A supervised VM may be asked to migrate later. */
		char err[256];

		if (mig_tls_preload_wait(err, sizeof(err)))
			log_warn("%s: this VM will not be able to migrate", err);
	}
	phase_mark(vm->trace, "tls");
	/* Before the filter, which has no io_uring_setup (teardown.c). */
	if (vm_prepare_kernel_teardown(vm))
		log_debug("KVM teardown: no io_uring, a child process will do it");
	phase_mark(vm->trace, "teardown_ring");
	/* The set-up threads end before the sandbox, which wants the process
	 * single-threaded (they have neither its filters nor its dropped
	 * privileges): each was told to, or is done, by now. */
	guest_mem_prefetch_setup_end(&vm->mem);
	if (wo->sandbox || wo->seccomp)
		vm_cpuid_join(vm); /* else vm_destroy: not worth a wait here */
	phase_mark(vm->trace, "setup_threads");
	if (wo->sandbox && (ret = sandbox_enter(&wo->sandbox_ids)))
		return ret;
	phase_mark(vm->trace, "sandbox");
	if (*ctl && (ret = control_attach(*ctl, wo->wait_start)))
		return ret;
	phase_mark(vm->trace, "control_attach");
	vm->no_new_sockets = wo->seccomp;
	if (wo->seccomp) {
		const void **slot[SANDBOX_THREADS] = {
			[SANDBOX_THREAD_VCPU] = &vm->vcpu_filter,
			[SANDBOX_THREAD_MIGRATION] = &vm->migration_filter,
			[SANDBOX_THREAD_THROTTLE] = &vm->throttle_filter,
			[SANDBOX_THREAD_PREFETCH] = &vm->prefetch_filter,
		};

		for (int k = 0; k < SANDBOX_THREADS; k++) {
			struct sock_fprog *f;

			/* Only a control command starts a migration; only a
			 * restore prefetches. */
			if (k == SANDBOX_THREAD_PREFETCH ? !wo->restore
			    : k != SANDBOX_THREAD_VCPU && !wo->control)
				continue;
			if (pre && pre->thread[k]) {
				f = pre->thread[k];
				pre->thread[k] = NULL;
			} else if ((ret = sandbox_thread_filter((enum sandbox_thread)k, &f))) {
				return ret;
			}
			*slot[k] = f;
		}
		bool allow_fork = vm->teardown_ring < 0;
		bool hotplug = config_cpus_possible(vm->cfg) > vm->cfg->cpus;

		/* The same program either way (sandbox-precompiled). */
		ret = pre ? sandbox_seccomp_load(pre->process[allow_fork][hotplug])
			  : sandbox_seccomp_install(allow_fork, hotplug);
		sandbox_filters_free(pre);
		if (ret)
			return ret;
	}
	phase_mark(vm->trace, "seccomp");
	/* Setting up (the configuration's JSON, libseccomp building the
	 * filters) freed most of what it took, in chunks below ones still in
	 * use: hand those pages back now rather than keep them for the VM's
	 * life (-72 KiB of RssAnon a worker, docs/benchmarks.md "VM density"). */
	malloc_trim(0);
	return 0;
}

/* Close the descriptors cellad passed for files ("fd:N"): whoever needed
 * one holds a duplicate by now (fdspec_open), and the sandboxed worker
 * keeps nothing else. */
static void close_passed_fds(const struct vm_config *cfg, const struct worker_opts *wo)
{
	const char *specs[] = { cfg->kernel, cfg->initrd, wo->restore, wo->tls_cert, wo->tls_key,
				wo->tls_ca, cfg->console != CONSOLE_STDIO ? cfg->console_path : NULL,
				cfg->kvm, wo->config, cfg->userfaultfd };
	int fd;

	for (unsigned i = 0; i < ARRAY_SIZE(specs); i++)
		if (specs[i] && fdspec_is_fd(specs[i], &fd) && fd > 2)
			close(fd);
	for (unsigned i = 0; i < cfg->nr_nets; i++) /* one per tap queue */
		tap_fd_close_passed(cfg->nets[i].tap_fd);
	for (unsigned i = 0; i < cfg->nr_nets; i++) /* passt's socket: duplicated too */
		if (cfg->nets[i].passt_fd && fdspec_is_fd(cfg->nets[i].passt_fd, &fd) && fd > 2)
			close(fd);
	for (unsigned i = 0; i < cfg->nr_disks; i++) {
		const struct disk_config *d = &cfg->disks[i];

		if (fdspec_is_fd(d->path, &fd) && fd > 2)
			close(fd);
		if (d->cbt_file && fdspec_is_fd(d->cbt_file, &fd) && fd > 2)
			close(fd);
		for (unsigned k = 0; d->backing && k < d->backing->nr; k++)
			if (d->backing->fd[k] > 2)
				close(d->backing->fd[k]);
	}
}

/* Live-migration destination: receive the VM (the worker is already set
 * up and sandboxed), acknowledge, and let main run it. 0 or -errno. */
static int incoming_receive(struct vm *vm, struct mig_incoming *in)
{
	char err[512] = "";
	int ret = migrate_incoming_receive(in, vm, vm->signal_fd, err, sizeof(err));

	if (!ret) {
		ret = migrate_incoming_ack(in);
		if (!ret)
			virtio_net_announce(vm); /* the guest runs here now: tell the switches */
	} else {
		log_err("%s", err);
	}
	/* The source lets go of the disk images once it has the ack (it
	 * exits): only then do they get their locks here, before the VM runs.
	 * The VM runs either way now (the source has stopped it): a lock
	 * still held after the retries is reported, not fatal. */
	for (int i = 0; !ret && i < 10; i++) {
		char lerr[300] = "";
		int lret = virtio_blk_take_locks(vm, lerr, sizeof(lerr));

		if (!lret)
			break;
		if (lret != -EBUSY || i == 9) {
			log_err("incoming migration: disk lock: %s (the VM runs without it)", lerr);
			break;
		}
	}
	if (ret)
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s",
			 err[0] ? err : "incoming migration: cannot acknowledge to the source");
	migrate_incoming_close(in);
	return ret;
}

/* sb: argv came in a --standby worker's request (vmm/standby.c); else NULL. */
static int worker_main(int argc, char **argv, const struct standby *sb)
{
	struct worker_opts wo = { 0 };
	struct control *ctl = NULL;
	struct statefile sf = { .fd = -1 };
	struct mem_order order = { 0 };
	struct mig_incoming *incoming = NULL;
	struct timespec t_restore;
	struct phase_trace trace_buf;
	struct phase_trace *trace = NULL;
	struct vm_config cfg;
	struct vm vm;
	sigset_t set;
	int ret, code;

	if (phase_trace_wanted()) {
		trace = &trace_buf;
		trace->n = 0;
		phase_mark(trace, "main");
	}
	config_init(&cfg);
	ret = parse_args(argc, argv, &cfg, &wo);
	if (ret) {
		config_free(&cfg);
		return ret > 0 ? 0 : WORKER_EXIT_CONFIG;
	}
	if (sb && !wo.restore) {
		fputs("cella-vm: standby: the request is no restore (it needs --restore FILE|fd:N)\n",
		      stderr);
		config_free(&cfg);
		return WORKER_EXIT_CONFIG;
	}
	if (sb) {
		cfg.standby_vm_fd = sb->vm_fd;
		cfg.standby_cpuid = sb->cpuid;
		cfg.standby_prep = sb->prep;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!wo.restore)
		trace = NULL;
	/* A restore: what worker_prepare loads before the sandbox, beside
	 * the VM's creation rather than after it. (Not for a boot: OpenSSL's
	 * allocations would land in the thread's malloc arena, 12-24 KiB more
	 * RssAnon per worker, docs/benchmarks.md "VM density".) */
	if (wo.restore && (wo.sandbox || wo.seccomp) && wo.control)
		mig_tls_preload_start();
	phase_mark(trace, "args");
	clock_gettime(CLOCK_MONOTONIC, &t_restore);
	if (wo.restore && restore_open(wo.restore, &cfg, &sf)) {
		mig_tls_preload_end();
		config_free(&cfg);
		log_info("exit: the state file cannot be restored (status %d: %s)", WORKER_EXIT_CONFIG,
			 worker_exit_kind(WORKER_EXIT_CONFIG));
		return WORKER_EXIT_CONFIG;
	}
	if (wo.incoming) {
		cfg.defer_disk_locks = true;
		/* Listen and read the TLS files now: a bad spec is a configuration
		 * error, and the sandbox hides the files later. */
		char err[512];

		if (migrate_incoming_open(&incoming, wo.incoming, wo.tls_cert, wo.tls_key,
					  wo.tls_ca, wo.tls_peer, err, sizeof(err))) {
			fprintf(stderr, "cella-vm: %s\n", err);
			mig_tls_preload_end();
			config_free(&cfg);
			return WORKER_EXIT_CONFIG;
		}
	}
	phase_mark(trace, "state_open");
	if (wo.restore ? vm_create_restore(&vm, &cfg, sf.fd, sf.info.mem_off, trace)
		       : vm_create(&vm, &cfg)) {
		statefile_close(&sf);
		migrate_incoming_close(incoming);
		mig_tls_preload_end();
		config_free(&cfg);
		log_info("exit: cannot create the VM (status %d: %s)", WORKER_EXIT_ERROR,
			 worker_exit_kind(WORKER_EXIT_ERROR));
		return WORKER_EXIT_ERROR;
	}
	/* Before the devices load (the balloon gives its pages back again). */
	if (wo.restore && !cfg.memory.prealloc && guest_mem_prefetch_prepare(&vm.mem))
		log_warn("restore: no memory for the prefetch's bookkeeping");
	phase_mark(trace, "prefetch_prepare");
	vm.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm.signal_fd < 0 || evloop_add(vm.loop, vm.signal_fd, EPOLLIN, on_signal, &vm)) {
		log_err("cannot watch signals: %s", strerror(errno));
		code = WORKER_EXIT_ERROR;
		snprintf(vm.exit_reason, sizeof(vm.exit_reason), "signal setup failed");
	} else if (wo.restore ? restore_setup(&vm, &sf, &t_restore, &order)
			      : incoming ? vm_setup_restore(&vm) : vm_setup(&vm)) {
		/* vm_setup names configuration problems (kernel, devices) itself. */
		code = vm_exiting(&vm) ? atomic_load(&vm.exit_code) : WORKER_EXIT_ERROR;
		if (!vm_exiting(&vm))
			snprintf(vm.exit_reason, sizeof(vm.exit_reason), "VM setup failed");
	} else if (close_passed_fds(&cfg, &wo), phase_mark(trace, "close_fds"),
		   worker_prepare(&vm, &wo, &ctl, sb ? sb->filters : NULL)) {
		code = WORKER_EXIT_ERROR;
		snprintf(vm.exit_reason, sizeof(vm.exit_reason), "worker setup failed");
	} else if (incoming && (ret = incoming_receive(&vm, incoming), incoming = NULL, ret)) {
		code = ret == -EINTR ? WORKER_EXIT_STOPPED : WORKER_EXIT_ERROR;
	} else {
		/* Fill the lazily mapped memory ahead of the guest (a restore
		 * with prealloc has it all already). */
		phase_mark(trace, "worker_prepare");
		if (wo.restore) {
			vm.restore_t0 = &t_restore;
			/* vm_run starts the fill thread once the vCPUs are. */
			if (vm.mem.prefetch)
				vm.prefetch_order = &order;
		}
		code = vm_run(&vm);
	}
	mem_order_free(&order);
	migrate_incoming_close(incoming);
	if (wo.stats)
		log_stats(&vm);
	log_info("exit: %s (status %d: %s)", vm.exit_reason, code, worker_exit_kind(code));
	control_record_exit(ctl, code, vm.exit_reason);
	if (vm.signal_fd >= 0)
		close(vm.signal_fd);
	fflush(stdout);
	if (sf.fd >= 0)
		statefile_close(&sf);
	vm_defer_kernel_teardown(&vm);
	control_destroy(ctl);
	vm_destroy(&vm);
	sandbox_thread_filter_free((struct sock_fprog *)vm.vcpu_filter);
	sandbox_thread_filter_free((struct sock_fprog *)vm.migration_filter);
	sandbox_thread_filter_free((struct sock_fprog *)vm.throttle_filter);
	sandbox_thread_filter_free((struct sock_fprog *)vm.prefetch_filter);
	mig_tls_preload_end();
	config_free(&cfg);
	return code;
}

int main(int argc, char **argv)
{
	struct standby sb = { 0 };
	int code;

	if (argc < 2 || strcmp(argv[1], "--standby"))
		return worker_main(argc, argv, NULL);
	code = standby_wait(argc, argv, &sb);
	if (!code)
		code = worker_main(sb.argc, sb.argv, &sb);
	standby_free(&sb);
	standby_filters_free(&sb);
	standby_prep_free(&sb);
	return code;
}
