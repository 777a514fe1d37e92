/* routes.c: the API's route table (docs/api/openapi.json): each route's
 * method, path, handler, allowed query parameters and the role it needs;
 * matching (404, 405 with Allow), name validation, and the role check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

typedef enum MHD_Result (*route_fn)(struct api_request *r, const char *name, int arg);

struct route {
	const char *method;
	const char *path; /* segments; "{name}" matches a VM name, another
	                   * "{...}" (a disk id, a checkpoint) goes to r->sub */
	route_fn fn;
	int arg;
	const char *const *query; /* allowed query parameters, NULL-terminated */
	enum role role;       /* the least role that may call it */
	bool peer_only;           /* host-to-host: over TCP, only with a peer's certificate */
	bool fwd;                 /* on a VM another pool host owns: forwarded to it */
};

static const char *const no_query[] = {NULL};
static const char *const console_query[] = {"history", "follow", NULL};
static const char *const console_ws_query[] = {"history", NULL};
static const char *const events_query[] = {"since", "vm", "follow", NULL};
static const char *const events_ws_query[] = {"since", "vm", NULL};
static const char *const image_query[] = {"location", NULL};
static const char *const jobs_query[] = {"vm", NULL};
static const char *const log_query[] = {"tail", NULL};
/* A change set's upload: resumable (id, total, offset) and what the point is
 * (cut_at, consistency). */
static const char *const set_query[] = {"id", "total", "offset", "cut_at", "consistency", NULL};

/* Roles: a viewer reads; an operator defines and runs VMs (with files from
 * the storage locations it may use: core/storage.h), checkpoints, moves,
 * the console, live disk limits; an admin may also name any host file,
 * manages peer hosts, and is what peer cellads moving VMs here authenticate
 * as. */
static const struct route routes[] = {
    {"GET", "/v1/host", h_host, 0, no_query, ROLE_VIEWER},
    {"GET", "/v1/vms", h_list, 0, no_query, ROLE_VIEWER},
    {"POST", "/v1/vms", h_create, 0, no_query, ROLE_OPERATOR},
    {"GET", "/v1/vms/{name}", h_get, 0, no_query, ROLE_VIEWER, false, true},
    {"PATCH", "/v1/vms/{name}", h_patch, 0, no_query, ROLE_OPERATOR, false, true},
    {"DELETE", "/v1/vms/{name}", h_delete, 0, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/start", h_action, SUP_START, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/stop", h_action, SUP_STOP, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/kill", h_action, SUP_KILL, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/reset", h_action, SUP_RESET, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/pause", h_action, SUP_PAUSE, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/resume", h_action, SUP_RESUME, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/save", h_action, SUP_SAVE, no_query, ROLE_OPERATOR, false, true},
    {"DELETE", "/v1/vms/{name}/state", h_action, SUP_DELETE_STATE, no_query, ROLE_OPERATOR, false, true},
    {"PATCH", "/v1/vms/{name}/disks/{disk}", h_disk, 0, no_query, ROLE_OPERATOR, false, true},
    {"PUT", "/v1/vms/{name}/balloon", h_balloon, 0, no_query, ROLE_OPERATOR, false, true},
    {"GET", "/v1/vms/{name}/checkpoints", h_checkpoint, CP_LIST, no_query, ROLE_VIEWER, false, true},
    {"POST", "/v1/vms/{name}/checkpoints", h_checkpoint, CP_CREATE, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/vms/{name}/checkpoints/{checkpoint}/apply", h_checkpoint, CP_APPLY, no_query,
     ROLE_OPERATOR, false, true},
    {"DELETE", "/v1/vms/{name}/checkpoints/{checkpoint}", h_checkpoint, CP_DELETE, no_query,
     ROLE_OPERATOR, false, true},
    {"GET", "/v1/vms/{name}/console", h_console, 0, console_query, ROLE_VIEWER, false, true},
    {"POST", "/v1/vms/{name}/console", h_console_input, 0, no_query, ROLE_OPERATOR, false,
     true},
    /* The console over a WebSocket: viewers read, operators also type (the
     * input is refused per message, ws_loop.c). Not forwarded: a VM another
     * pool host runs is a 409 naming it (ws_console.c). */
    {"GET", "/v1/vms/{name}/console/ws", h_console_ws, 0, console_ws_query, ROLE_VIEWER},
    {"GET", "/v1/vms/{name}/metrics", h_metrics, 0, no_query, ROLE_VIEWER, false, true},
    {"GET", "/v1/events", h_events, 0, events_query, ROLE_VIEWER},
    {"GET", "/v1/events/ws", h_events_ws, 0, events_ws_query, ROLE_VIEWER},
    /* Jobs and their phases: what the events say already, as a list. The
     * worker's log: viewers, like the events, which carry its last line
     * when a worker fails (the same diagnostics, no secrets: cella-vm
     * logs no credentials). Forwarded to the owner like the metrics. */
    {"GET", "/v1/jobs", h_jobs, 0, jobs_query, ROLE_VIEWER},
    {"GET", "/v1/vms/{name}/log", h_vm_log, 0, log_query, ROLE_VIEWER, false, true},
    {"GET", "/metrics", h_prometheus, 0, no_query, ROLE_VIEWER},
    {"GET", "/v1/switches", h_switches, SW_LIST, no_query, ROLE_VIEWER},
    {"POST", "/v1/switches", h_switches, SW_CREATE, no_query, ROLE_ADMIN},
    {"GET", "/v1/switches/{switch}", h_switches, SW_GET, no_query, ROLE_VIEWER},
    {"DELETE", "/v1/switches/{switch}", h_switches, SW_DELETE, no_query, ROLE_ADMIN},
    {"PATCH", "/v1/vms/{name}/nics/{nic}", h_nic, 0, no_query, ROLE_OPERATOR, false, true},
    {"GET", "/v1/hosts", h_hosts, HOSTS_LIST, no_query, ROLE_VIEWER},
    {"POST", "/v1/hosts", h_hosts, HOSTS_ADD, no_query, ROLE_ADMIN},
    {"DELETE", "/v1/hosts/{host}", h_hosts, HOSTS_REMOVE, no_query, ROLE_ADMIN},
    {"POST", "/v1/vms/{name}/move", h_move, 0, no_query, ROLE_OPERATOR, false, true},
    {"POST", "/v1/incoming", h_incoming, IN_PREPARE, no_query, ROLE_ADMIN, true},
    {"POST", "/v1/incoming/{name}/commit", h_incoming, IN_COMMIT, no_query, ROLE_ADMIN, true},
    {"DELETE", "/v1/incoming/{name}", h_incoming, IN_ABORT, no_query, ROLE_ADMIN, true},
    {"PUT", "/v1/incoming/{name}/state", h_upload, UP_STATE, no_query, ROLE_ADMIN, true},
    {"PUT", "/v1/incoming/{name}/disks/{disk}", h_upload, UP_DISK, no_query, ROLE_ADMIN, true},
    /* Replication: a VM's, from here; and the replicas kept here, made and
     * fed by their source hosts (peers), failed over by admins. */
    {"GET", "/v1/vms/{name}/replica", h_replica, REP_STATUS, no_query, ROLE_VIEWER},
    {"POST", "/v1/vms/{name}/replica", h_replica, REP_ENABLE, no_query, ROLE_OPERATOR},
    {"DELETE", "/v1/vms/{name}/replica", h_replica, REP_DISABLE, no_query, ROLE_OPERATOR},
    {"POST", "/v1/vms/{name}/replica/pause", h_replica, REP_PAUSE, no_query, ROLE_OPERATOR},
    {"POST", "/v1/vms/{name}/replica/resume", h_replica, REP_RESUME, no_query, ROLE_OPERATOR},
    {"GET", "/v1/replicas", h_replicas, REPS_LIST, no_query, ROLE_VIEWER},
    {"POST", "/v1/replicas", h_replicas, REPS_CREATE, no_query, ROLE_ADMIN, true},
    /* fwd: in a pool as target, the replica's owner answers (replica_broker.c) */
    {"GET", "/v1/replicas/{name}", h_replicas, REPS_GET, no_query, ROLE_VIEWER, false, true},
    {"DELETE", "/v1/replicas/{name}", h_replicas, REPS_DELETE, no_query, ROLE_ADMIN, false, true},
    {"POST", "/v1/replicas/{name}/failover", h_replicas, REPS_FAILOVER, no_query, ROLE_ADMIN, false,
     true},
    {"DELETE", "/v1/replicas/{name}/test", h_replicas, REPS_TEST_STOP, no_query, ROLE_ADMIN, false,
     true},
    /* Planned failover (the source), reverse replication (where the VM was
     * failed over to) and its other half (the old primary, peers only). */
    {"POST", "/v1/vms/{name}/replica/failover", h_replica_plan, REPP_FAILOVER, no_query, ROLE_ADMIN},
    {"POST", "/v1/vms/{name}/replica/reverse", h_replica_plan, REPP_REVERSE, no_query, ROLE_ADMIN},
    {"POST", "/v1/replicas/{name}/adopt", h_replica_plan, REPP_ADOPT, no_query, ROLE_ADMIN, true},
    {"PUT", "/v1/replicas/{name}/disks/{disk}", h_upload, UP_REPLICA_SET, set_query, ROLE_ADMIN,
     true},
    {"GET", "/v1/replicas/{name}/disks/{disk}", h_replicas, REPS_UPLOAD_STATE, no_query,
     ROLE_ADMIN, true},
    {"GET", "/v1/pool", h_pool, POOL_STATUS, no_query, ROLE_VIEWER},
    {"POST", "/v1/pool", h_pool, POOL_CREATE, no_query, ROLE_ADMIN},
    {"POST", "/v1/pool/tokens", h_pool, POOL_TOKEN, no_query, ROLE_ADMIN},
    {"POST", "/v1/pool/join", h_pool, POOL_JOIN, no_query, ROLE_ADMIN},
    {"POST", "/v1/pool/leave", h_pool, POOL_LEAVE, no_query, ROLE_ADMIN},
    /* A joining host: no role (its join token is the credential); the CA
     * is public (the token pins it). */
    {"POST", "/v1/pool/members", h_pool, POOL_ADMIT, no_query, ROLE_NONE},
    {"GET", "/v1/pool/ca", h_pool, POOL_CA, no_query, ROLE_NONE},
    /* Maintenance and balance (a host's own or sent on to it); a VM handed
     * over to this host, loaded on its new owner's request (peers only). */
    {"POST", "/v1/pool/hosts/{host}/maintenance", h_pool_maint, MAINT_HOST, no_query, ROLE_ADMIN},
    {"POST", "/v1/pool/balance", h_pool_maint, MAINT_BALANCE, no_query, ROLE_ADMIN},
    {"POST", "/v1/pool/vms/{vm}/load", h_pool_maint, MAINT_LOAD, no_query, ROLE_ADMIN, true},
    /* The web console: its files are public (the login page among them;
     * what it shows comes from the API); a session cookie is the browser's
     * credential (session.c), users with passwords are admins' to manage. */
    {"GET", "/", h_static, 2, no_query, ROLE_NONE},
    {"GET", "/ui", h_static, 0, no_query, ROLE_NONE},
    {"GET", "/ui/", h_static, 0, no_query, ROLE_NONE},
    {"GET", "/ui/{file}", h_static, 1, no_query, ROLE_NONE},
    {"POST", "/v1/session", h_session, SESSION_NEW, no_query, ROLE_NONE},
    {"GET", "/v1/session", h_session, SESSION_GET, no_query, ROLE_NONE},
    {"DELETE", "/v1/session", h_session, SESSION_END, no_query, ROLE_NONE},
    {"GET", "/v1/users", h_users, USERS_LIST, no_query, ROLE_ADMIN},
    {"POST", "/v1/users", h_users, USERS_ADD, no_query, ROLE_ADMIN},
    {"DELETE", "/v1/users/{user}", h_users, USERS_DELETE, no_query, ROLE_ADMIN},
    /* Images of the storage locations (core/images*.c): viewers list them
     * (the locations an operator may use, and their own); changes need the
     * operator role and a location that role may use. {file} is an image
     * name; ?location= picks among locations. */
    {"GET", "/v1/images", h_images, IMGS_LIST, image_query, ROLE_VIEWER},
    {"POST", "/v1/images", h_images, IMGS_CREATE, no_query, ROLE_OPERATOR},
    {"GET", "/v1/images/{file}", h_images, IMGS_GET, image_query, ROLE_VIEWER},
    {"DELETE", "/v1/images/{file}", h_images, IMGS_DELETE, image_query, ROLE_OPERATOR},
    {"POST", "/v1/images/{file}/resize", h_images, IMGS_RESIZE, image_query, ROLE_OPERATOR},
    {"POST", "/v1/images/{file}/convert", h_images, IMGS_CONVERT, image_query, ROLE_OPERATOR},
    {"POST", "/v1/images/{file}/backup", h_images, IMGS_BACKUP, image_query, ROLE_OPERATOR},
};

/* Match url against a route path; the {name} segment goes to name, any
 * other {...} segment to sub (both len bytes). */
static bool path_match(const char *pattern, const char *url, char *name, char *sub, size_t len)
{
	while (*pattern && *url) {
		if (*pattern == '{') {
			size_t n = strcspn(url, "/"), pl = strcspn(pattern, "}") + 1;
			char *dst = !strncmp(pattern, "{name}", 6) ? name : sub;

			if (n == 0 || n >= len)
				return false;
			memcpy(dst, url, n);
			dst[n] = 0;
			url += n;
			pattern += pl;
			continue;
		}
		if (*pattern++ != *url++)
			return false;
	}
	return !*pattern && !*url;
}

static const char *sub_field(const char *path)
{
	return strstr(path, "{disk}") ? "disk" : strstr(path, "{host}") ? "host"
	       : strstr(path, "{vm}") ? "vm" : strstr(path, "{switch}") ? "switch"
	       : strstr(path, "{nic}") ? "nic"
	       : strstr(path, "{file}") ? "file" : strstr(path, "{user}") ? "user"
	       : "checkpoint";
}

struct query_check {
	const char *const *allowed;
	const char *bad;
};

static enum MHD_Result check_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct query_check *qc = cls;

	(void)kind;
	(void)value;
	for (const char *const *a = qc->allowed; *a; a++)
		if (!strcmp(*a, key))
			return MHD_YES;
	qc->bad = key;
	return MHD_NO;
}

/* A request on a VM another host of the pool owns: its owner answers
 * (docs/pool.md, forwarding). */
static enum MHD_Result forward(struct api_request *r, const char *host, const char *addr)
{
	struct cerr e = {0};
	json_t *reply = NULL;
	long status = 0;

	if (sup_pool_forward(r->sup, host, addr, r->method, r->url, r->body, r->role, r->who,
			     &status, &reply, &e))
		return api_reply_error(r->c, &e);
	if (status < 200 || status > 599)
		status = 502;
	return api_reply_json(r->c, (unsigned)status, reply);
}

enum MHD_Result api_route(struct api_request *r)
{
	char name[256], sub[256] = "", allow[128] = "";
	const struct route *hit = NULL;
	bool path_hit = false;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!path_match(routes[i].path, r->url, name, sub, sizeof(name)))
			continue;
		path_hit = true;
		snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
		         allow[0] ? ", " : "", routes[i].method);
		if (!strcmp(routes[i].method, r->method))
			hit = &routes[i];
	}
	if (!path_hit)
		return api_fail(r->c, 404, "path", "no such resource: %.200s", r->url);
	if (!hit) {
		struct MHD_Response *resp;
		enum MHD_Result ret;
		json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", "method", "reason",
		                      "not allowed here", "message", "method: not allowed here");
		char *s = json_dumps(o, JSON_COMPACT);

		json_decref(o);
		if (!s)
			return MHD_NO;
		resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, "Allow", allow);
		MHD_add_response_header(resp, "Content-Type", "application/json");
		ret = MHD_queue_response(r->c, 405, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (r->role < hit->role)
		return api_fail(r->c, 403, "role", "%s needs the %s role; %.96s has %s", hit->path,
				role_name(hit->role), r->who, role_name(r->role));
	sub[0] = 0; /* from the matched route only */
	path_match(hit->path, r->url, name, sub, sizeof(name));
	{
		struct query_check qc = {.allowed = hit->query};

		MHD_get_connection_values(r->c, MHD_GET_ARGUMENT_KIND, check_query, &qc);
		if (qc.bad)
			return api_fail(r->c, 400, qc.bad, "unknown query parameter");
	}
	if (strstr(hit->path, "{name}") && !vmdef_name_valid(name))
		return api_fail(r->c, 400, "name", "not a valid VM name");
	if (sub[0] && !vmdef_name_valid(sub))
		return api_fail(r->c, 400, sub_field(hit->path), "not a valid name");
	r->sub = sub;
	if (hit->fwd && !r->forwarded) {
		char host[64], addr[256];

		if (hit->fn == h_replicas) /* a replica whose owner is down: taken over here */
			sup_replica_broker_route(r->sup, name);
		if (sup_pool_forward_target(r->sup, name, host, sizeof(host), addr, sizeof(addr))) {
			if (hit->fn == h_console || hit->fn == h_console_input)
				return api_console_forward(r, host, addr, hit->fn == h_console);
			return forward(r, host, addr);
		}
	}
	if (hit->fn != h_upload && r->upload_fd >= 0) { /* cannot happen: api_is_upload */
		close(r->upload_fd);
		r->upload_fd = -1;
	}
	return hit->fn(r, name, hit->arg);
}

bool api_is_upload(const char *method, const char *url)
{
	char name[256], sub[256];

	if (strcmp(method, "PUT"))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (routes[i].fn == h_upload &&
		    path_match(routes[i].path, url, name, sub, sizeof(name)))
			return true;
	return false;
}

int api_upload_open(struct api_request *r, int *fd, uint64_t *max, struct cerr *e)
{
	char name[256], sub[256] = "";

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (routes[i].fn != h_upload ||
		    !path_match(routes[i].path, r->url, name, sub, sizeof(name)))
			continue;
		if (!vmdef_name_valid(name))
			return cerr_set(e, CERR_INVALID, "name", "not a valid VM name");
		if (routes[i].arg != UP_STATE && !vmdef_name_valid(sub))
			return cerr_set(e, CERR_INVALID, "disk", "not a valid name");
		if (routes[i].arg == UP_REPLICA_SET &&
		    MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "id"))
			return sup_replica_in_part_open(
			    r->sup, name, sub,
			    MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "id"),
			    MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "total"),
			    MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "offset"), fd, max,
			    e);
		if (routes[i].arg == UP_REPLICA_SET)
			return sup_replica_in_upload_open(r->sup, name, sub, fd, max, e);
		return sup_incoming_upload_open(r->sup, name, routes[i].arg == UP_DISK ? sub : NULL,
		                                fd, max, e);
	}
	return cerr_set(e, CERR_NOT_FOUND, "path", "no such resource");
}

void api_upload_failed(struct sup *sup, const char *url, int fd, const struct cerr *e)
{
	char name[256], sub[256] = "";

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		struct cerr ignored = {0};
		json_t *out = NULL;

		if (routes[i].fn != h_upload || routes[i].arg != UP_REPLICA_SET ||
		    e->kind != CERR_NO_SPACE || !path_match(routes[i].path, url, name, sub, sizeof(name)) ||
		    !vmdef_name_valid(name) || !vmdef_name_valid(sub))
			continue;
		/* ok false: it closes fd and removes the set */
		if (!sup_replica_in_upload_done(sup, name, sub, fd, 0, false, &out, &ignored))
			json_decref(out);
		return;
	}
	close(fd);
}

enum role api_route_role(const char *method, const char *url)
{
	char name[256], sub[256];

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (!strcmp(routes[i].method, method) &&
		    path_match(routes[i].path, url, name, sub, sizeof(name)))
			return routes[i].role;
	return ROLE_NONE;
}

bool api_route_public(const char *method, const char *url)
{
	char name[256], sub[256];

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (!strcmp(routes[i].method, method) &&
		    path_match(routes[i].path, url, name, sub, sizeof(name)))
			return routes[i].role == ROLE_NONE;
	return false;
}

bool api_route_peer_only(const char *method, const char *url)
{
	char name[256], sub[256];

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (!strcmp(routes[i].method, method) &&
		    path_match(routes[i].path, url, name, sub, sizeof(name)))
			return routes[i].peer_only;
	return false;
}
