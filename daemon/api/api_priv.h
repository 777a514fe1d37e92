/* api_priv.h: shared by the API layer's files: server.c (plumbing),
 * routes.c (resources), errors.c (typed errors to HTTP statuses). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "cerr.h"
#include "sup.h"

/* The role a request needs (the matched route's; ROLE_NONE when no route
 * matches: the router answers 404 or 405). */
enum role api_route_role(const char *method, const char *url);
/* Whether the route is host-to-host (a peer moving a VM here): over TCP it
 * then needs a peer's certificate (mutual TLS) besides the role. */
bool api_route_peer_only(const char *method, const char *url);
/* Whether the route is open to callers without a role (a pool join: its
 * token in the body is the credential). */
bool api_route_public(const char *method, const char *url);
/* identity.c: the caller's role and a name for it. Unix socket: the
 * peer's uid and groups (SO_PEERCRED) against the configured users and
 * groups, root always admin; TCP: the bearer token's role (ROLE_NONE
 * without a valid one), and *peer when the client presented a certificate
 * the CA signed (a client certificate that does not verify: ROLE_NONE). */
enum role api_identify(const struct api_conf *conf, struct MHD_Connection *c, bool tcp,
			   bool *peer, char *who, size_t len);
/* A request a pool host forwards on a caller's behalf (docs/pool.md): the
 * header X-Cella-Forwarded-Role over TCP. 0: none; 1: *role is the
 * caller's, vouched for by a host of the pool (its client certificate
 * verifies against the pool's CA and names a host in the pool); -1: the
 * header without such a certificate (who says why). */
int api_identify_forwarded(struct MHD_Connection *c, struct sup *s, enum role *role, char *who,
			   size_t len);
/* The role a TCP bearer token gives (ROLE_NONE: none). */
enum role api_token_role(const struct api_conf *conf, const char *token);
struct api_request {
	struct MHD_Connection *c;
	enum role role;  /* the caller's (server.c, from its identity) */
	char who[96];        /* the caller, for messages and logs */
	int ui_dirfd;        /* the web console's directory (O_PATH), or -1 */
	struct api *api;
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
	bool restart;   /* set by the handler: cellad starts again once this is answered */
	bool forwarded; /* from a pool host on a caller's behalf: never forwarded again */
	/* The web console (session.c): its users and sessions; whether the
	 * request came over HTTPS; the client's address; and, when a session
	 * cookie authenticated it, its id and session. */
	struct auth *auth;
	const struct api_conf *conf;
	bool tls;
	char client_addr[64];
	bool by_cookie;
	char sid[AUTH_SID_LEN + 1];
	struct auth_session session;
};

enum MHD_Result api_route(struct api_request *r);
/* Uploads are written to a file as they arrive, never held in memory:
 * true when (method, url) is an upload route. */
bool api_is_upload(const char *method, const char *url);
/* Open the upload's file (0, with *fd and the most bytes accepted) or fill
 * e (-1). */
int api_upload_open(struct api_request *r, int *fd, uint64_t *max, struct cerr *e);
/* An upload that failed writing its file with e (fd closed): a replica's
 * change set that found its storage full goes, freeing what it took; other
 * partial files stay (a move's, until it commits or aborts). */
void api_upload_failed(struct sup *sup, const char *url, int fd, const struct cerr *e);

/* The HTTP status for a core error kind (errors.c). */
unsigned api_http_status(enum cerr_kind kind);

/* Queue a response; each consumes its body argument. */
enum MHD_Result api_reply_json(struct MHD_Connection *c, unsigned status, json_t *body);
enum MHD_Result api_reply_error(struct MHD_Connection *c, const struct cerr *e);
enum MHD_Result api_fail(struct MHD_Connection *c, int http, const char *field, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));
enum MHD_Result api_reply_text(struct MHD_Connection *c, unsigned status, char *text,
			       const char *type);
enum MHD_Result api_reply_stream(struct api_request *req, struct sup_stream *r, bool events,
				 const char *type);
/* Answer a WebSocket handshake with 101 (Sec-WebSocket-Accept: accept) and
 * hand the upgraded socket to the WebSocket loop with p (consumed either
 * way: freed if the upgrade never happens). */
struct ws_pending;
struct ws_loop;
enum MHD_Result api_reply_upgrade(struct api_request *r, const char *accept,
				  struct ws_pending *p);
/* The API's WebSocket loop (ws.h), or NULL. */
struct ws_loop *ws_api_loop(struct api *a);

/* request.c: what handlers share. */
/* The body as a JSON object: 0 (*out NULL for an empty optional body), or
 * -1 with the error queued in *res. */
int api_parse_body(struct api_request *r, bool required, json_t **out, enum MHD_Result *res);
int api_query_int(struct api_request *r, const char *key, long long min, long long max,
		  long long *v, enum MHD_Result *res);
int api_query_bool(struct api_request *r, const char *key, bool *v, enum MHD_Result *res);
/* A core call's outcome: e when ret is nonzero, else status with out
 * (consumed either way). */
enum MHD_Result api_reply(struct api_request *r, int ret, const struct cerr *e, unsigned status,
			  json_t *out);
/* A core call on VM name with the request's (required) body. */
typedef int (*sup_body_fn)(struct sup *s, const char *name, json_t *body, json_t **out,
			   struct cerr *e);
enum MHD_Result api_call_with_body(struct api_request *r, const char *name, sup_body_fn fn);

/* Handlers, one file per resource (routes.c maps requests to them; arg is
 * the route's). */
enum { CP_LIST, CP_CREATE, CP_APPLY, CP_DELETE };
enum { HOSTS_LIST, HOSTS_ADD, HOSTS_REMOVE };
enum { SW_LIST, SW_CREATE, SW_GET, SW_DELETE };
enum { IN_PREPARE, IN_COMMIT, IN_ABORT };
enum { POOL_STATUS, POOL_LEAVE, POOL_CREATE, POOL_TOKEN, POOL_JOIN, POOL_ADMIT, POOL_CA };
enum { REP_STATUS, REP_ENABLE, REP_DISABLE, REP_PAUSE, REP_RESUME };
enum { REPS_LIST, REPS_CREATE, REPS_GET, REPS_DELETE, REPS_FAILOVER, REPS_TEST_STOP,
       REPS_UPLOAD_STATE };
enum { REPP_FAILOVER, REPP_REVERSE, REPP_ADOPT };
/* h_upload's arg: what the upload is. */
enum { UP_STATE, UP_DISK, UP_REPLICA_SET };
enum { MAINT_HOST, MAINT_BALANCE, MAINT_LOAD };
enum { IMGS_LIST, IMGS_CREATE, IMGS_GET, IMGS_DELETE, IMGS_RESIZE, IMGS_CONVERT, IMGS_BACKUP };
#define API_HANDLER(fn) enum MHD_Result fn(struct api_request *r, const char *name, int arg)
/* images.c */
API_HANDLER(h_images);
/* vms.c */
API_HANDLER(h_list);
API_HANDLER(h_create);
API_HANDLER(h_get);
API_HANDLER(h_patch);
API_HANDLER(h_delete);
API_HANDLER(h_action);
API_HANDLER(h_metrics);
API_HANDLER(h_jobs);   /* jobs.c */
API_HANDLER(h_vm_log);
API_HANDLER(h_disk);
API_HANDLER(h_move);
API_HANDLER(h_balloon);
API_HANDLER(h_console);
API_HANDLER(h_console_input);
/* console_fwd.c: the console of a VM host (at addr) owns, forwarded:
 * output (GET, streamed) or input (POST). */
enum MHD_Result api_console_forward(struct api_request *r, const char *host, const char *addr,
				    bool output);
/* checkpoints.c */
API_HANDLER(h_checkpoint);
/* host.c */
API_HANDLER(h_host);
API_HANDLER(h_events);
API_HANDLER(h_prometheus);
API_HANDLER(h_hosts);
API_HANDLER(h_pool);
/* maint.c */
API_HANDLER(h_pool_maint);
/* switches.c */
API_HANDLER(h_switches);
API_HANDLER(h_nic);
/* incoming.c */
API_HANDLER(h_incoming);
API_HANDLER(h_upload);
/* replicas.c */
API_HANDLER(h_replica);
API_HANDLER(h_replicas);
/* replica_planned.c */
API_HANDLER(h_replica_plan);
/* ws_console.c: a VM's console, and the events, over a WebSocket
 * (docs/web.md). */
API_HANDLER(h_console_ws);
API_HANDLER(h_events_ws);
/* Whether a WebSocket handshake may go on as far as its Origin goes: one
 * a session cookie authenticated must come from this server's origin. */
bool api_ws_origin_allowed(struct api_request *r);
/* static.c: the web console's files (arg 0: /ui, its index.html; 1: a file;
 * 2: GET /, a redirect to /ui/) */
API_HANDLER(h_static);
/* session.c: the web console's sessions and users (docs/web.md). */
enum { SESSION_NEW, SESSION_GET, SESSION_END };
enum { USERS_LIST, USERS_ADD, USERS_DELETE };
API_HANDLER(h_session);
API_HANDLER(h_users);
/* A session cookie on c: 1 (a live session: *sid and *s filled), 0 (no
 * session cookie, or one that names no live session), -1 (a malformed one). */
int api_session_identify(struct auth *a, struct MHD_Connection *c, char *sid,
			 struct auth_session *s);
/* Whether c's Origin header is this server's own origin (scheme by tls,
 * host from the Host header): the check for state-changing requests a
 * cookie authenticates (CSRF), and for WebSocket upgrades. */
bool api_origin_ok(struct MHD_Connection *c, bool tls);
/* A state-changing method (POST, PUT, PATCH, DELETE). */
bool api_method_changes(const char *method);
