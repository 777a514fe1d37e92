/* log_tail.c: the end of a VM's worker log (state_dir/logs/NAME.log, the
 * worker's stdout and stderr) for GET /v1/vms/{name}/log: at most
 * LOG_TAIL_MAX_BYTES read from the file's end, its last lines as JSON
 * strings (log_lines.c). */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"
#include "log_tail.h"

/* The VM's name is checked against the registry under reg_lock only: a
 * job (a checkpoint merge) may hold the VM's lock for long, and the log
 * is what one reads while waiting for it. */
static bool vm_known(struct sup *s, const char *name)
{
	bool found = false;

	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *vm = s->vms; vm && !found; vm = vm->next)
		found = !vm->deleted && !strcmp(vm->def.name, name);
	pthread_mutex_unlock(&s->reg_lock);
	return found;
}

int sup_vm_log(struct sup *s, const char *name, unsigned tail, json_t **out, struct cerr *e)
{
	char path[600], *buf = NULL;
	struct stat st = {0};
	off_t from = 0;
	ssize_t got = 0;
	bool more = false;
	json_t *lines;
	int fd;

	if (!vm_known(s, name))
		return cerr_set(e, CERR_NOT_FOUND, "name", "no VM named '%.64s'", name);
	snprintf(path, sizeof(path), "%s/logs/%s.log", s->conf.state_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno != ENOENT)
		return cerr_set(e, CERR_INTERNAL, "", "cannot open the worker's log: %s",
				strerror(errno));
	if (fd >= 0) {
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			return cerr_set(e, CERR_INTERNAL, "", "the worker's log is not a file");
		}
		from = MAX((off_t)0, st.st_size - (off_t)LOG_TAIL_MAX_BYTES);
		buf = malloc(LOG_TAIL_MAX_BYTES);
		if (!buf) {
			close(fd);
			return cerr_set(e, CERR_INTERNAL, "", "out of memory");
		}
		/* The worker may append meanwhile: read what was there at fstat. */
		while (got < st.st_size - from) {
			ssize_t r = pread(fd, buf + got, (size_t)(st.st_size - from - got), from + got);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += r;
		}
		close(fd);
	}
	lines = log_tail_lines(buf ? buf : "", (size_t)got, tail, from == 0, &more);
	free(buf);
	if (!lines)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	*out = json_pack("{s:s, s:I, s:b, s:o}", "name", name, "size", (json_int_t)st.st_size,
			 "truncated", more, "lines", lines);
	return 0;
}

double log_restore_ms(const char *path)
{
	char buf[8192];
	const char *tag = " ms after the restore began", *p, *end;
	ssize_t n;
	off_t size;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	size = lseek(fd, 0, SEEK_END);
	n = size < 0 ? -1 : pread(fd, buf, sizeof(buf) - 1, MAX((off_t)0, size - (off_t)sizeof(buf) + 1));
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	end = NULL;
	for (p = strstr(buf, tag); p; p = strstr(p + 1, tag))
		end = p; /* the last restore's */
	if (!end)
		return -1;
	/* "restore: vCPUs running, 1.912 ms after ...": the number before. */
	for (p = end; p > buf && (p[-1] == '.' || (p[-1] >= '0' && p[-1] <= '9')); p--)
		;
	return p < end ? strtod(p, NULL) : -1;
}
