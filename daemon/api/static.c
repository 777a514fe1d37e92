/* static.c: files of the web console, served from the directory `ui_dir`
 * names (GET /ui, GET /ui/{file}). A file is opened beneath that directory
 * only: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so neither ".."
 * nor a symlink leads out of it; directories and other non-regular files
 * are not served. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api_priv.h"

static const struct {
	const char *ext, *type;
} types[] = {
	{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },   { ".json", "application/json" },
	{ ".svg", "image/svg+xml" },             { ".png", "image/png" },
	{ ".ico", "image/x-icon" },              { ".txt", "text/plain; charset=utf-8" },
	{ ".woff2", "font/woff2" },
};

static const char *content_type(const char *file)
{
	const char *dot = strrchr(file, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(dot, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}

API_HANDLER(h_static)
{
	const char *file = arg ? r->sub : "index.html";
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	struct MHD_Response *resp;
	enum MHD_Result ret;
	struct stat st;
	int fd;

	(void)name;
	if (r->ui_dirfd < 0)
		return api_fail(r->c, 404, "path", "no web console here (ui_dir is not configured)");
	fd = (int)syscall(SYS_openat2, r->ui_dirfd, file, &how, sizeof(how));
	if (fd < 0 && errno == EXDEV)
		return api_fail(r->c, 404, "path", "%.64s: outside the console's directory", file);
	if (fd < 0)
		return api_fail(r->c, 404, "path", "%.64s: %s", file, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return api_fail(r->c, 404, "path", "%.64s: not a file", file);
	}
	resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes fd */
	if (!resp) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", content_type(file));
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	ret = MHD_queue_response(r->c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}
