/* disk.c (cli): `cella disk create|info|resize|convert|commit|rebase|check`,
 * the image tools of the disk library run locally (no cellad needed). */
#include "cli/disk.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "disk/disk.h"
#include "cli/disk_backup.h"

enum { OK = 0, FAIL = 1, USAGE = 2 };

struct sub {
	const char *name, *args, *help;
	int (*fn)(int argc, char **argv);
};

static int usage_err(const char *sub, const char *msg, const char *arg)
{
	fprintf(stderr, "cella disk %s: ", sub);
	fprintf(stderr, msg, arg);
	fprintf(stderr, " (see cella disk %s --help)\n", sub);
	return USAGE;
}

static int fail(const char *sub, const char *what, int ret, const char *why)
{
	fprintf(stderr, "cella disk %s: %s: %s\n", sub, what, why && *why ? why : strerror(-ret));
	return FAIL;
}

/* "10G", "512M", "1.5T" is not accepted: integer with an optional binary
 * suffix K/M/G/T/P (KiB, MB... spellings too). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	case 'p':
	case 'P':
		shift = 50;
		break;
	case 'b':
	case 'B':
	case 0:
		break;
	default:
		return -EINVAL;
	}
	if (*end && *end != 'b' && *end != 'B') {
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "ib"))
			end += strlen(end);
	} else if (*end) {
		end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_fmt(const char *s)
{
	return !strcmp(s, "raw") ? DISK_FMT_RAW : !strcmp(s, "qcow2") ? DISK_FMT_QCOW2 : -1;
}

static const char *fmt_name(int f)
{
	return f == DISK_FMT_QCOW2 ? "qcow2" : "raw";
}

static void human(uint64_t v, char *out, size_t len)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v;
	unsigned i = 0;

	while (d >= 1024 && i + 1 < sizeof(u) / sizeof(u[0])) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, len, "%" PRIu64 " B", v);
	else
		snprintf(out, len, "%.3g %s", d, u[i]);
}

/* Probe the format of an existing file (for a backing file given without
 * its format). */
static int probe_fmt(const char *image, const char *backing)
{
	char err[256], *p = image ? disk_backing_path(image, backing) : strdup(backing);
	struct disk *d;
	int f = -1;

	if (p &&
	    !disk_open(&d, p, -1, DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING, err, sizeof(err))) {
		f = disk_format_of(d);
		disk_close(d);
	}
	free(p);
	return f;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"size", required_argument, NULL, 's'},
	    {"cluster-size", required_argument, NULL, 'c'},
	    {"backing", required_argument, NULL, 'b'},
	    {"backing-format", required_argument, NULL, 'F'},
	    {"preallocation", required_argument, NULL, 'p'},
	    {"force", no_argument, NULL, 'y'},
	    {0},
	};
	struct disk_create_opts o = {.fmt = DISK_FMT_QCOW2};
	bool force = false, have_size = false;
	char err[512];
	uint64_t v;
	struct stat st;
	int c, ret;

	while ((c = getopt_long(argc, argv, "f:s:c:b:F:p:", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			if ((int)(o.fmt = (enum disk_format)parse_fmt(optarg)) < 0)
				return usage_err("create", "unknown format '%s' (raw or qcow2)",
				                 optarg);
			break;
		case 's':
			if (parse_size(optarg, &o.size))
				return usage_err("create", "invalid size '%s'", optarg);
			have_size = true;
			break;
		case 'c':
			if (parse_size(optarg, &v) || v < 512 || v > (2u << 20) || (v & (v - 1)))
				return usage_err(
				    "create", "invalid cluster size '%s' (a power of two, 512..2M)",
				    optarg);
			o.cluster_bits = (unsigned)__builtin_ctzll(v);
			break;
		case 'b':
			o.backing = optarg;
			break;
		case 'F':
			if ((int)(o.backing_fmt = (enum disk_format)parse_fmt(optarg)) < 0)
				return usage_err("create", "unknown backing format '%s'", optarg);
			o.backing_fmt_explicit = true;
			break;
		case 'p':
			if (strcmp(optarg, "metadata") && strcmp(optarg, "off"))
				return usage_err("create",
				                 "preallocation is 'metadata' or 'off', not '%s'",
				                 optarg);
			o.preallocate_metadata = !strcmp(optarg, "metadata");
			break;
		case 'y':
			force = true;
			break;
		default:
			return usage_err("create", "%s", "unknown option");
		}
	}
	if (optind < argc - 2 || optind >= argc)
		return usage_err("create", "%s", "expected PATH [SIZE]");
	if (optind == argc - 2 && parse_size(argv[argc - 1], &o.size))
		return usage_err("create", "invalid size '%s'", argv[argc - 1]);
	have_size |= optind == argc - 2;
	if (!have_size && !o.backing)
		return usage_err("create", "%s", "--size is required (or a backing file)");
	if (o.fmt == DISK_FMT_RAW && (o.backing || o.cluster_bits || o.preallocate_metadata))
		return usage_err("create", "%s",
		                 "raw images take no backing file, cluster size or preallocation");
	if (!force && stat(argv[optind], &st) == 0)
		return fail("create", argv[optind], -EEXIST,
		            "the file exists (--force to overwrite it)");
	ret = disk_create(argv[optind], &o, err, sizeof(err));
	if (ret)
		return fail("create", argv[optind], ret, err);
	{ /* maybe taken from the backing file or rounded up: report what was made */
		struct disk *d;

		if (!disk_open(&d, argv[optind], -1, DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING,
		               err, sizeof(err))) {
			o.size = disk_size(d);
			disk_close(d);
		}
	}
	printf("Formatting '%s', fmt=%s size=%" PRIu64 "%s%s\n", argv[optind], fmt_name(o.fmt),
	       o.size, o.backing ? " backing_file=" : "", o.backing ? o.backing : "");
	return OK;
}

static int open_for(const char *sub, const char *path, unsigned flags, struct disk **d)
{
	char err[512];
	int ret = disk_open(d, path, -1, flags, err, sizeof(err));

	return ret ? fail(sub, path, ret, err) : OK;
}

static void print_info(const char *path, const struct disk_info *i, bool json)
{
	char a[32], b[32];

	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b, s:b}", "filename",
		                      path, "format", fmt_name(i->fmt), "virtual-size",
		                      (json_int_t)i->size, "actual-size", (json_int_t)i->file_size,
		                      "allocated", (json_int_t)i->allocated, "chain-depth",
		                      (json_int_t)i->chain_depth, "dirty-flag", i->dirty,
		                      "lazy-refcounts", i->lazy_refcounts, "corrupt", i->corrupt);

		if (i->fmt == DISK_FMT_QCOW2)
			json_object_set_new(o, "cluster-size",
			                    json_integer(1ll << i->cluster_bits));
		if (i->backing[0]) {
			json_object_set_new(o, "backing-filename", json_string(i->backing));
			json_object_set_new(o, "backing-filename-format",
			                    json_string(fmt_name(i->backing_fmt)));
		}
		char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		puts(s ? s : "{}");
		free(s);
		json_decref(o);
		return;
	}
	human(i->size, a, sizeof(a));
	human(i->file_size, b, sizeof(b));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
	       path, fmt_name(i->fmt), a, i->size, b);
	if (i->fmt == DISK_FMT_QCOW2) {
		human(i->allocated, a, sizeof(a));
		printf("cluster_size: %llu\nallocated in this layer: %s\n", 1ull << i->cluster_bits,
		       a);
	}
	if (i->backing[0])
		printf("backing file: %s\nbacking file format: %s\n", i->backing,
		       fmt_name(i->backing_fmt));
	if (i->chain_depth)
		printf("chain depth: %u\n", i->chain_depth);
	if (i->fmt == DISK_FMT_QCOW2)
		printf("lazy refcounts: %s\ndirty: %s\ncorrupt: %s\n",
		       i->lazy_refcounts ? "true" : "false", i->dirty ? "true" : "false",
		       i->corrupt ? "true" : "false");
}

static int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'}, {"force-share", no_argument, NULL, 'U'}, {0}};
	unsigned flags = DISK_RDONLY;
	bool json = false;
	struct disk_info info;
	struct disk *d;
	char err[512];
	int c, ret;

	while ((c = getopt_long(argc, argv, "U", lo, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'U')
			flags |= DISK_NO_LOCK;
		else
			return usage_err("info", "%s", "unknown option");
	}
	if (optind != argc - 1)
		return usage_err("info", "%s", "expected one PATH");
	bool partial = false;

	ret = disk_open(&d, argv[optind], -1, flags, err, sizeof(err));
	if (ret) {
		/* a missing backing file should not hide the image itself */
		char err2[512];

		if (disk_open(&d, argv[optind], -1, flags | DISK_NO_BACKING, err2, sizeof(err2)))
			return fail("info", argv[optind], ret, err);
		fprintf(stderr, "cella disk info: warning: %s\n", err);
		partial = true;
		ret = 0;
	}
	if (ret)
		return fail("info", argv[optind], ret, err);
	ret = disk_get_info(d, &info);
	if (ret) {
		fail("info", argv[optind], ret, disk_error(d));
		disk_close(d);
		return FAIL;
	}
	if (partial)
		info.chain_depth = 0; /* backing not opened: unknown */
	print_info(argv[optind], &info, json);
	disk_close(d);
	return OK;
}

static int cmd_resize(int argc, char **argv)
{
	static const struct option lo[] = {{"shrink", no_argument, NULL, 's'}, {0}};
	bool shrink = false, rel = false, neg = false, force = false;
	const char *arg, *path = NULL, *size = NULL;
	uint64_t v, n;
	struct disk *d;
	int ret;

	/* "-SIZE" is a size, not an option: parse by hand */
	for (int i = 1; i < argc; i++) {
		arg = argv[i];
		if (!strcmp(arg, "--shrink"))
			shrink = true;
		else if (!strcmp(arg, "--force"))
			force = true;
		else if (!path)
			path = arg;
		else if (!size)
			size = arg;
		else
			return usage_err("resize", "unexpected argument '%s'", arg);
	}
	(void)lo;
	if (!path || !size)
		return usage_err("resize", "%s", "expected PATH SIZE");
	if (*size == '+' || *size == '-') {
		rel = true;
		neg = *size == '-';
		size++;
	}
	if (parse_size(size, &v))
		return usage_err("resize", "invalid size '%s'", size);
	if ((ret = open_for("resize", path, DISK_NO_BACKING, &d)))
		return ret;
	n = !rel ? v : neg ? disk_size(d) - MIN(v, disk_size(d)) : disk_size(d) + v;
	if (rel && !neg && n < v) {
		disk_close(d);
		return usage_err("resize", "%s", "size overflow");
	}
	if (n < disk_size(d) && !shrink) {
		disk_close(d);
		fprintf(stderr, "cella disk resize: %s: shrinking needs --shrink\n", path);
		return USAGE;
	}
	if (n < disk_size(d)) {
		uint64_t lost;

		ret = disk_allocated_from(d, n, &lost);
		if (!ret && lost && !force) {
			fprintf(stderr,
			        "cella disk resize: %s: %" PRIu64 " bytes are allocated beyond the "
			        "new end (%" PRIu64 "); --force discards them\n",
			        path, lost, n);
			disk_close(d);
			return FAIL;
		}
		/* Forced: drop them first, so that nothing past the end survives
		 * to reappear if the image grows again. */
		if (!ret && lost)
			ret = disk_write_zeroes(d, n, disk_size(d) - n, true);
		if (ret) {
			fail("resize", path, ret, disk_error(d));
			disk_close(d);
			return FAIL;
		}
	}
	ret = disk_resize(d, n, shrink);
	if (ret) {
		fail("resize", path, ret, disk_error(d));
		disk_close(d);
		return FAIL;
	}
	if (disk_close(d))
		return fail("resize", path, -EIO, "flush failed");
	puts("Image resized.");
	return OK;
}

static int cmd_convert(int argc, char **argv)
{
	static const struct option lo[] = {{"cluster-size", required_argument, NULL, 'c'},
	                                   {"force-share", no_argument, NULL, 'U'},
	                                   {0}};
	struct disk_create_opts o = {.fmt = DISK_FMT_RAW};
	unsigned flags = DISK_RDONLY;
	int c, ret, sfmt = -1;
	struct disk *src;
	char err[512];
	uint64_t v;

	while ((c = getopt_long(argc, argv, "O:f:c:U", lo, NULL)) != -1) {
		switch (c) {
		case 'O':
			if ((int)(o.fmt = (enum disk_format)parse_fmt(optarg)) < 0)
				return usage_err("convert", "unknown format '%s'", optarg);
			break;
		case 'f':
			if ((sfmt = parse_fmt(optarg)) < 0)
				return usage_err("convert", "unknown format '%s'", optarg);
			break;
		case 'c':
			if (parse_size(optarg, &v) || v < 512 || v > (2u << 20) || (v & (v - 1)))
				return usage_err("convert", "invalid cluster size '%s'", optarg);
			o.cluster_bits = (unsigned)__builtin_ctzll(v);
			break;
		case 'U':
			flags |= DISK_NO_LOCK;
			break;
		default:
			return usage_err("convert", "%s", "unknown option");
		}
	}
	if (optind != argc - 2)
		return usage_err("convert", "%s", "expected SRC DST");
	ret = disk_open(&src, argv[optind], sfmt, flags, err, sizeof(err));
	if (ret)
		return fail("convert", argv[optind], ret, err);
	err[0] = 0;
	ret = disk_convert(src, argv[optind + 1], &o, err, sizeof(err));
	disk_close(src);
	return ret ? fail("convert", argv[optind + 1], ret, err) : OK;
}

static int cmd_commit(int argc, char **argv)
{
	struct disk *d;
	int ret;

	if (argc != 2 || argv[1][0] == '-')
		return usage_err("commit", "%s", "expected PATH");
	if ((ret = open_for("commit", argv[1], 0, &d)))
		return ret;
	ret = disk_commit(d);
	if (ret) {
		fail("commit", argv[1], ret, disk_error(d));
		disk_close(d);
		return FAIL;
	}
	if (disk_close(d))
		return fail("commit", argv[1], -EIO, "flush failed");
	puts("Image committed.");
	return OK;
}

static int cmd_rebase(int argc, char **argv)
{
	bool unsafe = false;
	const char *nb = NULL;
	int c, ret, fmt = -1;
	struct disk *d;

	while ((c = getopt(argc, argv, "ub:F:")) != -1) {
		switch (c) {
		case 'u':
			unsafe = true;
			break;
		case 'b':
			nb = optarg;
			break;
		case 'F':
			if ((fmt = parse_fmt(optarg)) < 0)
				return usage_err("rebase", "unknown format '%s'", optarg);
			break;
		default:
			return usage_err("rebase", "%s", "unknown option");
		}
	}
	if (!nb || optind != argc - 1)
		return usage_err("rebase", "%s", "expected -b NEW|\"\" PATH");
	if (*nb && fmt < 0 && (fmt = probe_fmt(argv[optind], nb)) < 0) {
		if (!unsafe)
			return fail("rebase", nb, -ENOENT, "cannot open the new backing file");
		fmt = DISK_FMT_RAW;
		fprintf(stderr,
		        "cella disk rebase: warning: %s cannot be opened; recording it as "
		        "raw (give -F)\n",
		        nb);
	}
	if ((ret = open_for("rebase", argv[optind], unsafe ? DISK_NO_BACKING : 0, &d)))
		return ret;
	ret = disk_rebase(d, nb, fmt < 0 ? DISK_FMT_RAW : (enum disk_format)fmt, unsafe);
	if (ret) {
		fail("rebase", argv[optind], ret, disk_error(d));
		disk_close(d);
		return FAIL;
	}
	if (disk_close(d))
		return fail("rebase", argv[optind], -EIO, "flush failed");
	return OK;
}

static int cmd_check(int argc, char **argv)
{
	static const struct option lo[] = {{"json", no_argument, NULL, 'j'},
	                                   {"repair", required_argument, NULL, 'r'},
	                                   {"force-share", no_argument, NULL, 'U'},
	                                   {0}};
	struct disk_check_result r;
	unsigned flags = DISK_RDONLY | DISK_NO_BACKING;
	int c, ret, repair = 0;
	uint64_t corr, leaks;
	bool json = false;
	struct disk *d;

	while ((c = getopt_long(argc, argv, "r:U", lo, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'U':
			flags |= DISK_NO_LOCK;
			break;
		case 'r':
			if (!strcmp(optarg, "leaks"))
				repair = 1;
			else if (!strcmp(optarg, "all"))
				repair = 2;
			else
				return usage_err("check", "-r takes leaks or all, not '%s'",
				                 optarg);
			break;
		default:
			return usage_err("check", "%s", "unknown option");
		}
	}
	if (optind != argc - 1)
		return usage_err("check", "%s", "expected one PATH");
	if (repair)
		flags = (flags & ~(unsigned)(DISK_RDONLY | DISK_NO_LOCK)) | DISK_REPAIR;
	if ((ret = open_for("check", argv[optind], flags | DISK_CHECK, &d)))
		return ret;
	if (disk_format_of(d) != DISK_FMT_QCOW2) {
		/* as qemu-img check: raw images have nothing to check */
		fprintf(stderr, "cella disk check: %s: this image format does not support checks\n",
		        argv[optind]);
		disk_close(d);
		return 63;
	}
	ret = disk_check_mode(d, repair, &r);
	if (ret) {
		fail("check", argv[optind], ret, disk_error(d));
		disk_close(d);
		return FAIL;
	}
	disk_close(d);
	corr = r.corruptions - r.corruptions_fixed;
	leaks = r.leaks - r.leaks_fixed;
	if (json) {
		json_t *o =
		    json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "filename", argv[optind],
		              "corruptions", (json_int_t)corr, "leaks", (json_int_t)leaks,
		              "corruptions-fixed", (json_int_t)r.corruptions_fixed, "leaks-fixed",
		              (json_int_t)r.leaks_fixed, "first-problem", r.first_problem);
		char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		puts(s ? s : "{}");
		free(s);
		json_decref(o);
	} else {
		if (r.leaks_fixed || r.corruptions_fixed)
			printf("Repaired: %" PRIu64 " leaked clusters, %" PRIu64 " corruptions.\n",
			       r.leaks_fixed, r.corruptions_fixed);
		if (corr)
			printf("%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt "
			       "it.\nFirst: %s\n",
			       corr, r.first_problem);
		if (leaks)
			printf("%" PRIu64 " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n",
			       leaks);
		if (!corr && !leaks)
			puts("No errors were found on the image.");
	}
	return corr ? 2 : leaks ? 3 : OK;
}

static const struct sub subs[] = {
    {"create",
     "[-f raw|qcow2] [--size SIZE] [--cluster-size N] [--backing FILE "
     "[--backing-format F]] [--preallocation metadata] [--force] PATH [SIZE]",
     "create an image: qcow2 grows as written (New-VHD -Dynamic), with --backing it "
     "records only changes (-Differencing)",
     cmd_create},
    {"info", "[--json] [--force-share] PATH", "show an image's format, sizes and backing chain",
     cmd_info},
    {"resize", "PATH [+|-]SIZE [--shrink [--force]]",
     "change the virtual size (a shrink over allocated data needs --force)", cmd_resize},
    {"convert", "[-f FMT] [-O raw|qcow2] [--cluster-size N] SRC DST",
     "copy an image's content (its chain flattened) into a new image", cmd_convert},
    {"commit", "PATH", "write an overlay's changes into its backing file", cmd_commit},
    {"rebase", "[-u] -b NEW|\"\" [-F FMT] PATH",
     "change the backing file (safe: copies what differs; -u: header only)", cmd_rebase},
    {"check", "[-r leaks|all] [--json] [--force-share] PATH",
     "check refcounts (exit 0 clean, 2 corruptions, 3 leaks)", cmd_check},
    /* changed-block tracking backups (cli/disk_backup.c) */
    {"backup", "PATH --point NAME [--since POINT] -o FILE",
     "full backup (raw), or incremental since POINT (changed 64 KiB blocks); starts NAME",
     cmd_disk_backup},
    {"restore", "-o FULL_IMAGE INCR_FILE...", "apply incremental backups onto a full image",
     cmd_disk_restore},
    {"replica", "add DIR SET... | points [--json] DIR | merge --keep N DIR | drop --after P DIR",
     "a replica disk's recovery points: change sets made points, listed, merged, dropped",
     cmd_disk_replica},
};

static void disk_usage(FILE *f)
{
	fputs("Usage: cella disk COMMAND [OPTIONS]\nImage tools (raw and qcow2), run locally.\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].help);
	fputs("\nSizes take K, M, G, T suffixes (binary). Exit status: 0 success, 1 failure,\n"
	      "2 usage error. An image a running VM has open read-write is refused.\n",
	      f);
}

int disk_cli_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		disk_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? USAGE : OK;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name))
			continue;
		for (int j = 2; j < argc; j++) {
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
				printf("Usage: cella disk %s %s\n\n%s.\n", subs[i].name,
				       subs[i].args, subs[i].help);
				return OK;
			}
		}
		optind = 1;
		opterr = 0;
		return subs[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "cella disk: unknown command '%s' (see cella disk --help)\n", argv[1]);
	return USAGE;
}
