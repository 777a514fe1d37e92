/* standalone_driver.c: runs a libFuzzer target without libFuzzer: every file
 * of the corpus directories given as arguments, then FUZZ_ITERS (default
 * 20000) deterministic mutations of them (bit flips, byte sets, truncation,
 * splices). Any crash or sanitizer report fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seed {
	uint8_t *data;
	size_t len;
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic, so a failure reproduces. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static int read_file(const char *path, struct seed *out)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	if (n < 0) {
		fclose(f);
		return -1;
	}
	out->data = malloc((size_t)n + 1);
	out->len = fread(out->data, 1, (size_t)n, f);
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	struct seed *seeds = NULL;
	size_t nr = 0, cap = 0;
	const char *iters_env = getenv("FUZZ_ITERS");
	long iters = iters_env ? atol(iters_env) : 20000;
	uint64_t s = 0x9e3779b97f4a7c15ULL;

	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *e;

		if (!d)
			continue;
		while ((e = readdir(d))) {
			char path[4096];
			struct seed sd;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (read_file(path, &sd))
				continue;
			if (nr == cap) {
				cap = cap ? cap * 2 : 16;
				seeds = realloc(seeds, cap * sizeof(*seeds));
			}
			seeds[nr++] = sd;
			LLVMFuzzerTestOneInput(sd.data, sd.len);
		}
		closedir(d);
	}
	printf("replayed %zu corpus files\n", nr);
	for (long it = 0; it < iters; it++) {
		size_t len;
		uint8_t *buf;

		if (nr && (rng_next(&s) % 8) != 0) {
			const struct seed *sd = &seeds[rng_next(&s) % nr];
			len = sd->len;
			buf = malloc(len + 64);
			memcpy(buf, sd->data, len);
			int muts = 1 + (int)(rng_next(&s) % 8);
			for (int m = 0; m < muts && len; m++) {
				size_t pos = rng_next(&s) % len;
				switch (rng_next(&s) % 5) {
				case 0: buf[pos] ^= (uint8_t)(1u << (rng_next(&s) % 8)); break;
				case 1: buf[pos] = (uint8_t)rng_next(&s); break;
				case 2: buf[pos] = (rng_next(&s) & 1) ? 0xff : 0; break;
				case 3: len = pos + 1; break;
				default: {
					/* Copy a random 4-byte value: stresses lengths and offsets. */
					uint32_t v = (uint32_t)rng_next(&s);
					size_t n = (len - pos) < 4 ? (len - pos) : 4;
					memcpy(buf + pos, &v, n);
				}
				}
			}
		} else {
			len = rng_next(&s) % 4096;
			buf = malloc(len + 1);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rng_next(&s);
		}
		LLVMFuzzerTestOneInput(buf, len);
		free(buf);
	}
	printf("ran %ld mutated inputs\n", iters);
	for (size_t i = 0; i < nr; i++)
		free(seeds[i].data);
	free(seeds);
	return 0;
}
