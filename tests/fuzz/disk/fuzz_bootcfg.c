/* fuzz_bootcfg.c: the readers of an image's boot configuration
 * (disk/bootcfg.h) and of its partition table and file system signatures
 * (disk/parttab.h), on arbitrary bytes. The first byte picks the reader:
 * 0 grub.cfg, 1 a BLS entry (and the default among names), 2 grubenv then
 * grub.cfg (split at the first NUL), 3 a partition table over the rest as
 * a disk. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bootcfg.h"
#include "parttab.h"

struct mem {
	const uint8_t *b;
	size_t len;
};

static int mem_rd(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct mem *m = ctx;

	if (off > m->len || len > m->len - off)
		return -EINVAL;
	memcpy(buf, m->b + off, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_entry *e;
	struct boot_vars *v;
	char err[512];
	const char *p = (const char *)data + 1;
	size_t n = size ? size - 1 : 0;

	if (!size)
		return 0;
	e = malloc(sizeof(*e));
	v = malloc(sizeof(*v));
	if (!e || !v)
		goto out;
	boot_vars_init(v);
	switch (data[0] % 4) {
	case 0:
		(void)!grubcfg_default_entry(p, n, v, e, err, sizeof(err));
		break;
	case 1: {
		const char *names[3] = { "a-6.1.conf", "a-6.10.conf", "rescue.conf" };
		char def[128];

		(void)!bls_entry_parse(p, n, "x.conf", v, e, err, sizeof(err));
		bls_loader_default(p, n, def, sizeof(def));
		(void)bls_pick_default(names, 3, def);
		break;
	}
	case 2: {
		const char *nul = memchr(p, '\0', n);
		size_t k = nul ? (size_t)(nul - p) : n;

		(void)!grubenv_parse(v, p, k, err, sizeof(err));
		(void)!grubcfg_default_entry(p + k, n - k, v, e, err, sizeof(err));
		break;
	}
	default: {
		struct mem m = { data + 1, n };
		struct parttab *pt = malloc(sizeof(*pt));

		if (!pt)
			break;
		(void)fs_probe(mem_rd, &m, 0, n);
		if (!parttab_read(mem_rd, &m, n, pt, err, sizeof(err)))
			for (unsigned i = 0; i < pt->nr; i++)
				(void)fs_probe(mem_rd, &m, pt->p[i].off, pt->p[i].len);
		free(pt);
		break;
	}
	}
out:
	free(e);
	free(v);
	return 0;
}
