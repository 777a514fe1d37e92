/* forward_stream.c: the console of a VM another host owns, forwarded to its
 * owner (docs/pool.md, "Any host answers for the pool"): its output
 * streamed through as it comes (features/peer_stream.c), its input with a
 * raw body. Each forwarded stream's transfer holds a thread here while it
 * lasts, so this host forwards at most POOL_FWD_STREAMS_MAX at once. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "peer.h"
#include "pool_priv.h"
#include "sup.h"

#define POOL_FWD_STREAMS_MAX 64
#define POOL_FWD_ANSWER_S 60 /* as pool_forward's requests */

static ssize_t src_read(void *ctx, char *buf, size_t max, int timeout_ms)
{
	return peer_stream_read(ctx, buf, max, timeout_ms);
}

static void src_set_wake(void *ctx, void (*fn)(void *arg), void *arg)
{
	peer_stream_set_wake(ctx, fn, arg);
}

static bool src_arm(void *ctx)
{
	return peer_stream_arm(ctx);
}

static bool src_disarm(void *ctx)
{
	return peer_stream_disarm(ctx);
}

static void src_close(void *ctx)
{
	peer_stream_close(ctx);
}

static const struct sup_stream_src peer_src = {
	.read = src_read, .set_wake = src_set_wake, .arm = src_arm, .disarm = src_disarm,
	.close = src_close,
};

static void stream_ended(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	p->fwd_streams--;
	pthread_cond_broadcast(&p->fwd_done);
	pthread_mutex_unlock(&p->lock);
}

int pool_forward_raw_op(void *ctx, const char *host, const char *address,
			const struct sup_fwd_req *req, long *status, json_t **reply,
			const struct sup_stream_src **src, void **src_ctx, struct cerr *e)
{
	struct pool *p = ctx;
	struct pool_fwd_hdrs hdrs;
	struct peer peer;
	struct peer_stream *ps = NULL;
	struct peer_stream_req pr = {
		.method = req->method, .path = req->path, .body = req->body, .len = req->len,
		.content_type = "application/octet-stream", .stream = req->stream,
		.answer_timeout_s = POOL_FWD_ANSWER_S,
	};
	char err[512];

	*reply = NULL;
	*src = NULL;
	*src_ctx = NULL;
	if (pool_fwd_peer(p, host, address, req->role, req->who, &hdrs, &peer, e))
		return -1;
	if (req->stream) {
		pthread_mutex_lock(&p->lock);
		if (p->fwd_streams >= POOL_FWD_STREAMS_MAX) {
			pthread_mutex_unlock(&p->lock);
			return cerr_set(e, CERR_UNAVAILABLE, "", "this host forwards %u console "
					"streams already, the most it does; attach on host %s",
					POOL_FWD_STREAMS_MAX, host);
		}
		p->fwd_streams++;
		pthread_mutex_unlock(&p->lock);
		pr.on_end = stream_ended;
		pr.on_end_arg = p;
	}
	if (peer_stream_open(&peer, &pr, status, reply, &ps, err, sizeof(err)))
		return cerr_set(e, CERR_PEER, "", "forwarding to the VM's owner: %s", err);
	log_info("pool: %s %s forwarded to %s: %ld%s", req->method, req->path, host, *status,
		 ps ? " (streaming)" : "");
	if (ps) {
		*src = &peer_src;
		*src_ctx = ps;
	}
	return 0;
}

void pool_forward_streams_wait(struct pool *p)
{
	struct timespec dl;

	/* The API stopped: every reader closed, so each transfer ends within
	 * about a second (features/peer_stream.c). */
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&p->lock);
	while (p->fwd_streams)
		if (pthread_cond_timedwait(&p->fwd_done, &p->lock, &dl) == ETIMEDOUT)
			break;
	if (p->fwd_streams)
		log_warn("pool: %u forwarded console transfers still ending", p->fwd_streams);
	pthread_mutex_unlock(&p->lock);
}
