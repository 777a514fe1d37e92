/* disk_backup.c: `cella disk backup PATH --point NAME [--since POINT] -o FILE`
 * and `cella disk restore -o FULL_IMAGE INCR_FILE...`.
 *
 * backup without --since writes the guest-visible content of PATH (its
 * chain flattened) as a raw image and starts tracking point NAME in
 * PATH.cbt; with --since it writes only the 64 KiB blocks changed since
 * POINT (disk/cbt.h documents the format) and starts NAME. Run it while no
 * VM uses the image (the image lock refuses otherwise), e.g. with the VM
 * stopped, or on the base image after a disk-switch froze it.
 * restore applies incrementals, in the order given, onto a full image. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "disk_backup.h"

static int backup_usage(void)
{
	fprintf(stderr, "usage: cella disk backup PATH --point NAME [--since POINT] -o FILE\n");
	return 2;
}

int cmd_disk_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "point", required_argument, NULL, 'p' },
		{ "since", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *point = NULL, *since = NULL, *out = NULL, *path;
	struct disk *d = NULL;
	struct cbt *c = NULL;
	char err[512] = "";
	uint64_t bytes = 0;
	int opt, fd = -1, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (opt) {
		case 'p': point = optarg; break;
		case 's': since = optarg; break;
		case 'o': out = optarg; break;
		default: return backup_usage();
		}
	}
	if (optind != argc - 1 || !point || !out)
		return backup_usage();
	path = argv[optind];
	/* Read-only with a shared lock: a VM writing the image refuses us. */
	ret = disk_open(&d, path, -1, DISK_RDONLY, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "cella: %s: %s\n", path, err);
		return 1;
	}
	ret = cbt_open(&c, path, disk_size(d), err, sizeof(err));
	if (ret) {
		fprintf(stderr, "cella: %s: change tracking: %s\n", path, err);
		goto out;
	}
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		fprintf(stderr, "cella: %s: %s\n", out, strerror(errno));
		ret = -errno;
		goto out;
	}
	ret = since ? cbt_backup_incremental(d, c, since, point, fd, &bytes, err, sizeof(err))
		    : cbt_backup_full(d, c, point, fd, &bytes, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "cella: backup of %s failed: %s\n", path, err);
		unlink(out);
	} else {
		printf("%s backup of %s: %llu bytes of data in %s; point '%s' started\n",
		       since ? "incremental" : "full", path, (unsigned long long)bytes, out, point);
	}
out:
	if (fd >= 0)
		close(fd);
	cbt_close(c, true);
	if (d)
		disk_close(d);
	return ret ? 1 : 0;
}

static int restore_usage(void)
{
	fprintf(stderr, "usage: cella disk restore -o FULL_IMAGE INCR_FILE...\n");
	return 2;
}

int cmd_disk_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	char prev[CBT_NAME_MAX] = "", point[CBT_NAME_MAX], since[CBT_NAME_MAX + 1] = "";
	char err[512] = "";
	const char *out = NULL;
	struct disk *d = NULL;
	int opt, ret = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (opt != 'o')
			return restore_usage();
		out = optarg;
	}
	if (!out || optind >= argc)
		return restore_usage();
	if (disk_open(&d, out, -1, 0, err, sizeof(err))) {
		fprintf(stderr, "cella: %s: %s\n", out, err);
		return 1;
	}
	for (int i = optind; i < argc && !ret; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "cella: %s: %s\n", argv[i], strerror(errno));
			ret = 1;
			break;
		}
		/* The chain must hold: each one since the point the last one started. */
		if (prev[0] && (pread(fd, since, CBT_NAME_MAX, 8 + 4 + 4 + 8 * 3 + CBT_NAME_MAX) !=
					CBT_NAME_MAX ||
				strncmp(since, prev, CBT_NAME_MAX))) {
			fprintf(stderr, "cella: %s does not follow point '%s' (it is since '%.31s')\n",
				argv[i], prev, since);
			close(fd);
			ret = 1;
			break;
		}
		ret = cbt_restore_incremental(d, fd, point, since, err, sizeof(err));
		close(fd);
		if (ret) {
			fprintf(stderr, "cella: %s: %s\n", argv[i], err);
			break;
		}
		printf("applied %s (point '%s', since '%s')\n", argv[i], point, since);
		snprintf(prev, sizeof(prev), "%s", point);
	}
	if (disk_close(d) && !ret) {
		fprintf(stderr, "cella: %s: flush failed\n", out);
		ret = 1;
	}
	return ret ? 1 : 0;
}
