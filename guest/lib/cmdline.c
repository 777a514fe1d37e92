/* cmdline.c: the PVH command line, split into words and key=value params. */
#include "libtest.h"

#define CMDLINE_MAX 4096
#define ARGV_MAX 128

static char cmdline_copy[CMDLINE_MAX];	/* the untouched line */
static char words[CMDLINE_MAX];		/* the line with NULs between words */
static char *argv_buf[ARGV_MAX + 1];
static int argc_buf;

/* Copies the line out of the VMM's boot area (the SMP test later reuses
 * low memory) and splits it. argv[0] is the program name. */
int cmdline_init(const char *src, char ***argv);
int cmdline_init(const char *src, char ***argv)
{
	size_t n = 0;
	if (src)
		while (n < CMDLINE_MAX - 1 && src[n])
			n++;
	if (n)
		memcpy(cmdline_copy, src, n);
	cmdline_copy[n] = '\0';
	memcpy(words, cmdline_copy, n + 1);

	argv_buf[argc_buf++] = (char *)test_name;
	char *p = words;
	while (*p && argc_buf < ARGV_MAX) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			*p++ = '\0';
		if (!*p)
			break;
		argv_buf[argc_buf++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
	}
	argv_buf[argc_buf] = NULL;
	*argv = argv_buf;
	return argc_buf;
}

const char *cmdline(void)
{
	return cmdline_copy;
}

const char *param_get(const char *key)
{
	size_t klen = strlen(key);
	const char *found = NULL;
	/* The last occurrence wins, as on Linux. */
	for (int i = 1; i < argc_buf; i++)
		if (!strncmp(argv_buf[i], key, klen) && argv_buf[i][klen] == '=')
			found = argv_buf[i] + klen + 1;
	return found;
}

uint64_t param_u64(const char *key, uint64_t def)
{
	const char *v = param_get(key);
	uint64_t out;
	if (!v)
		return def;
	if (!parse_u64(v, &out))
		fail("parameter %s=%s is not a number", key, v);
	return out;
}

const char *param_str(const char *key, const char *def)
{
	const char *v = param_get(key);
	return v ? v : def;
}
