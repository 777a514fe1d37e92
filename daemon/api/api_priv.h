/* api_priv.h: shared by the API layer's files: server.c (plumbing),
 * routes.c (resources), errors.c (typed errors to HTTP statuses). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cerr.h"
#include "sup.h"

struct api_request {
	struct MHD_Connection *c;
	const char *url;
	const char *method;
	const char *body; /* NUL-terminated, or NULL when empty */
	size_t len;
	struct sup *sup;
	const char *sub;  /* the route's second path parameter (disk, checkpoint) */
	char local_addr[64]; /* this host's IPv4 address the request came in on, or "" */
	/* A streamed upload (PUT of a quick move's files): the file it went
	 * to (-1: none) and its length; the handler finishes it. */
	int upload_fd;
	uint64_t upload_bytes;
};

enum MHD_Result api_route(struct api_request *r);
/* Uploads are written to a file as they arrive, never held in memory:
 * true when (method, url) is an upload route. */
bool api_is_upload(const char *method, const char *url);
/* Open the upload's file (0, with *fd and the most bytes accepted) or fill
 * e (-1). */
int api_upload_open(struct api_request *r, int *fd, uint64_t *max, struct cerr *e);

/* The HTTP status for a core error kind (errors.c). */
unsigned api_http_status(enum cerr_kind kind);

/* Queue a response; each consumes its body argument. */
enum MHD_Result api_reply_json(struct MHD_Connection *c, unsigned status, json_t *body);
enum MHD_Result api_reply_error(struct MHD_Connection *c, const struct cerr *e);
enum MHD_Result api_fail(struct MHD_Connection *c, int http, const char *field, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));
enum MHD_Result api_reply_text(struct MHD_Connection *c, unsigned status, char *text,
			       const char *type);
enum MHD_Result api_reply_stream(struct MHD_Connection *c, struct sup_stream *r, bool events,
				 const char *type);
