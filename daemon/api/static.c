/* static.c: files of the web console, served from the directory `ui_dir`
 * names (GET /ui, GET /ui/, GET /ui/{file}; GET / redirects to /ui/). A file
 * is opened beneath that directory only: openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS), so neither ".." nor a symlink leads out of it;
 * directories and other non-regular files are not served. Every answer
 * carries a strict Content-Security-Policy (docs/web.md); a file named with
 * a content hash (name-HASH.ext) is cached for a year, the others are
 * revalidated with their ETag; FILE.br or FILE.gz beside a file is sent to
 * clients that accept that encoding. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api_priv.h"
#include "web_parse.h"

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

#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
	    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static void security_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Content-Security-Policy", CSP);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
	MHD_add_response_header(resp, "Server", "cellad/0.1.0");
}

/* esbuild's "[name]-[hash]": a '-' then 8 or more letters and digits just
 * before the extension. Such a file never changes under its name. */
static bool content_hashed(const char *file)
{
	const char *dot = strrchr(file, '.'), *dash;
	size_t n = 0;

	if (!dot || dot == file)
		return false;
	for (dash = dot - 1; dash > file && *dash != '-'; dash--, n++)
		if (!((*dash >= 'A' && *dash <= 'Z') || (*dash >= 'a' && *dash <= 'z') ||
		      (*dash >= '0' && *dash <= '9')))
			return false;
	return *dash == '-' && dash > file && n >= 8;
}

static int open_beneath(int dirfd, const char *file, struct stat *st)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, dirfd, file, &how, sizeof(how));

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -EISDIR;
	}
	return fd;
}

/* Does If-None-Match name etag (or "*")? */
static bool etag_matches(const char *inm, const char *etag)
{
	size_t el = strlen(etag);

	for (const char *p = inm; p && *p;) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		if (!strncmp(p, "W/", 2))
			p += 2;
		if (*p == '*' || (!strncmp(p, etag, el) && (p[el] == 0 || p[el] == ',' ||
							   p[el] == ' ')))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

static enum MHD_Result redirect(struct MHD_Connection *c, const char *to)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"",
								    MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	security_headers(resp);
	MHD_add_response_header(resp, "Location", to);
	ret = MHD_queue_response(c, 302, resp);
	MHD_destroy_response(resp);
	return ret;
}

API_HANDLER(h_static)
{
	const char *file = arg == 1 ? r->sub : "index.html";
	const char *ae = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Accept-Encoding");
	const char *inm = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "If-None-Match");
	static const char *const encodings[][2] = { { "br", ".br" }, { "gzip", ".gz" } };
	const char *encoding = NULL;
	bool compressible = false;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char etag[96];
	struct stat st;
	int fd;

	(void)name;
	if (arg == 2)
		return redirect(r->c, "/ui/");
	if (r->ui_dirfd < 0)
		return api_fail(r->c, 404, "path", "no web console here (ui_dir is not configured)");
	fd = open_beneath(r->ui_dirfd, file, &st);
	if (fd == -EXDEV)
		return api_fail(r->c, 404, "path", "%.64s: outside the console's directory", file);
	if (fd == -EISDIR)
		return api_fail(r->c, 404, "path", "%.64s: not a file", file);
	if (fd < 0)
		return api_fail(r->c, 404, "path", "%.64s: %s", file, strerror(-fd));
	/* A precompressed sibling the client accepts (never for .gz or .br
	 * files asked for by name). */
	for (size_t i = 0; i < sizeof(encodings) / sizeof(encodings[0]); i++) {
		char sib[300];
		struct stat sst;
		int sfd;

		snprintf(sib, sizeof(sib), "%s%s", file, encodings[i][1]);
		sfd = open_beneath(r->ui_dirfd, sib, &sst);
		if (sfd < 0)
			continue;
		compressible = true;
		if (encoding || !web_accepts_encoding(ae, encodings[i][0])) {
			close(sfd);
			continue;
		}
		close(fd);
		fd = sfd;
		st = sst;
		encoding = encodings[i][0];
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx-%llx%s%s\"", (unsigned long long)st.st_ino,
		 (unsigned long long)st.st_size,
		 (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
			 (unsigned long long)st.st_mtim.tv_nsec,
		 encoding ? "-" : "", encoding ? encoding : "");
	if (inm && etag_matches(inm, etag)) {
		close(fd);
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes fd */
		inm = NULL;
	}
	if (!resp) {
		if (!inm)
			close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", content_type(file));
	security_headers(resp);
	MHD_add_response_header(resp, "ETag", etag);
	MHD_add_response_header(resp, "Cache-Control", content_hashed(file)
				? "public, max-age=31536000, immutable" : "no-cache");
	if (encoding)
		MHD_add_response_header(resp, "Content-Encoding", encoding);
	if (compressible)
		MHD_add_response_header(resp, "Vary", "Accept-Encoding");
	ret = MHD_queue_response(r->c, inm ? 304 : 200, resp);
	MHD_destroy_response(resp);
	return ret;
}
