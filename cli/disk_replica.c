/* disk_replica.c: `cella disk replica add|points|merge|drop`: a replica
 * disk's recovery points (disk/replica.h), run locally on the store's
 * directory: change sets (CELLAINC files: `disk-export`, `cella disk
 * backup`; plain, or compressed with zstd as replication sends them) made
 * points, listed, merged by retention, dropped after a point.
 * cellad's replication drives the same library; this is the operator's and
 * the tests' way in. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "disk_backup.h"
#include "replica.h"

#define MAX_LIST 4096

static int usage(void)
{
	fputs("usage: cella disk replica add DIR CHANGE_SET...\n"
	      "       cella disk replica points [--json] DIR\n"
	      "       cella disk replica merge --keep N DIR\n"
	      "       cella disk replica drop --after POINT DIR\n",
	      stderr);
	return 2;
}

static struct replica *open_store(const char *dir, bool create)
{
	struct replica *r;
	char err[512];

	if (replica_open(&r, dir, create, err, sizeof(err))) {
		fprintf(stderr, "cella: %s\n", err);
		return NULL;
	}
	return r;
}

static int rep_add(int argc, char **argv)
{
	struct replica *r;
	int ret = 0;

	if (argc < 3)
		return usage();
	if (!(r = open_store(argv[1], true)))
		return 1;
	for (int i = 2; i < argc && !ret; i++) {
		struct replica_point p;
		char err[512];
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "cella: %s: %s\n", argv[i], strerror(errno));
			ret = 1;
			break;
		}
		ret = replica_add_any(r, fd, UINT64_MAX, &p, err, sizeof(err)); /* plain or zstd */
		close(fd);
		if (ret)
			fprintf(stderr, "cella: %s: %s\n", argv[i], err);
		else
			printf("point %s made from %s (%s, %" PRIu64 " bytes)\n", p.name, argv[i],
			       p.file, p.file_bytes);
	}
	replica_close(r);
	return ret ? 1 : 0;
}

static int rep_points(int argc, char **argv)
{
	struct replica_point *pts = calloc(MAX_LIST, sizeof(*pts));
	bool json = argc == 3 && !strcmp(argv[1], "--json");
	const char *dir = argv[argc - 1];
	struct replica *r = NULL;
	char err[512];
	unsigned n = 0;
	int ret = 1;

	if (!pts)
		return 1;
	if (argc != 2 && !json) {
		free(pts);
		return usage();
	}
	if (!(r = open_store(dir, false)))
		goto out;
	if (replica_points(r, pts, MAX_LIST, &n, err, sizeof(err))) {
		fprintf(stderr, "cella: %s\n", err);
		goto out;
	}
	if (json) {
		json_t *arr = json_array();

		for (unsigned i = 0; i < n && i < MAX_LIST; i++)
			json_array_append_new(arr, json_pack("{s:s, s:I, s:s++, s:I, s:I}", "name",
							     pts[i].name, "seq", (json_int_t)pts[i].seq,
							     "path", dir, "/", pts[i].file,
							     "file_bytes", (json_int_t)pts[i].file_bytes,
							     "made_ns", (json_int_t)pts[i].made_ns));
		json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	} else {
		printf("%-5s %-31s %12s  %s\n", "SEQ", "POINT", "BYTES", "LAYER");
		for (unsigned i = 0; i < n && i < MAX_LIST; i++)
			printf("%-5u %-31s %12" PRIu64 "  %s\n", pts[i].seq, pts[i].name,
			       pts[i].file_bytes, pts[i].file);
	}
	ret = 0;
out:
	replica_close(r);
	free(pts);
	return ret;
}

static int rep_merge(int argc, char **argv)
{
	static const struct option opts[] = { { "keep", required_argument, NULL, 'k' }, { 0 } };
	struct replica *r;
	unsigned long keep = 0;
	unsigned n, merged = 0;
	char err[512], *end;
	int o, ret = 0;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'k')
			return usage();
		errno = 0;
		keep = strtoul(optarg, &end, 10);
		if (errno || *end || !keep || keep > MAX_LIST) {
			fprintf(stderr, "cella: --keep: a number of points from 1 to %d\n", MAX_LIST);
			return 2;
		}
	}
	if (!keep || optind != argc - 1)
		return usage();
	if (!(r = open_store(argv[optind], false)))
		return 1;
	while (!(ret = replica_points(r, NULL, 0, &n, err, sizeof(err))) && n > keep) {
		if ((ret = replica_merge_oldest(r, err, sizeof(err))))
			break;
		merged++;
	}
	if (ret)
		fprintf(stderr, "cella: %s\n", err);
	else
		printf("%u point%s merged into the base; %u kept\n", merged, merged == 1 ? "" : "s",
		       n);
	replica_close(r);
	return ret ? 1 : 0;
}

static int rep_drop(int argc, char **argv)
{
	static const struct option opts[] = { { "after", required_argument, NULL, 'a' }, { 0 } };
	const char *after = NULL;
	struct replica *r;
	char err[512];
	int o, ret;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'a')
			return usage();
		after = optarg;
	}
	if (!after || optind != argc - 1)
		return usage();
	if (!(r = open_store(argv[optind], false)))
		return 1;
	ret = replica_drop_after(r, after, err, sizeof(err));
	if (ret)
		fprintf(stderr, "cella: %s\n", err);
	else
		printf("points after %s dropped\n", after);
	replica_close(r);
	return ret ? 1 : 0;
}

int cmd_disk_replica(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} subs[] = {
		{ "add", rep_add }, { "points", rep_points }, { "merge", rep_merge },
		{ "drop", rep_drop },
	};

	if (argc < 2)
		return usage();
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "cella: unknown replica command '%s'\n", argv[1]);
	return usage();
}
