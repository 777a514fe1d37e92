/* stream.c: console history and streams, console input, and the event
 * stream. A reader waits in sup_stream_read (on its VM's condition, or the
 * event ring's), or, in an event loop, arms a wake and is called back. */
#include "sup_priv.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "deadline.h"
#include "log.h"

struct sup_stream {
	struct sup *s;
	struct vmrt *vm;      /* console streams */
	bool follow;
	uint64_t pos;         /* console: absolute byte offset */
	int64_t seq;          /* events: next sequence number wanted */
	char vm_filter[VMDEF_NAME_MAX + 1];
	char *pending;        /* events: rest of a line that did not fit */
	size_t pending_off;
	void (*wake)(void *arg); /* an event loop's reader (sup_stream_set_wake) */
	void *wake_arg;
	atomic_bool armed;
	struct sup_stream *next_reader; /* vm->readers or s->ev_readers */
	const struct sup_stream_src *src; /* a forwarded stream: its bytes come from src */
	void *src_ctx;
};

struct sup_stream *sup_stream_of_src(struct sup *s, const struct sup_stream_src *src, void *ctx)
{
	struct sup_stream *r = calloc(1, sizeof(*r));

	if (!r) {
		src->close(ctx);
		return NULL;
	}
	r->s = s;
	r->follow = true;
	r->src = src;
	r->src_ctx = ctx;
	return r;
}

void sup_streams_wake(struct sup_stream *head)
{
	for (struct sup_stream *r = head; r; r = r->next_reader)
		if (atomic_exchange(&r->armed, false))
			r->wake(r->wake_arg);
}

/* The lock over the list r is on. */
static pthread_mutex_t *reader_lock(struct sup_stream *r)
{
	return r->vm ? &r->vm->lock : &r->s->ev_lock;
}

static struct sup_stream **reader_list(struct sup_stream *r)
{
	return r->vm ? &r->vm->readers : &r->s->ev_readers;
}

void sup_stream_set_wake(struct sup_stream *r, void (*fn)(void *arg), void *arg)
{
	if (r->src) {
		r->src->set_wake(r->src_ctx, fn, arg);
		return;
	}
	pthread_mutex_lock(reader_lock(r));
	r->wake = fn;
	r->wake_arg = arg;
	r->next_reader = *reader_list(r);
	*reader_list(r) = r;
	pthread_mutex_unlock(reader_lock(r));
}

static bool stream_ready(struct sup_stream *r);

bool sup_stream_arm(struct sup_stream *r)
{
	bool ready;

	if (r->src) /* cellad stopping: read (and end) now */
		return !r->s->shutting_down && r->src->arm(r->src_ctx);
	pthread_mutex_lock(reader_lock(r));
	ready = stream_ready(r);
	if (!ready)
		atomic_store(&r->armed, true);
	pthread_mutex_unlock(reader_lock(r));
	return !ready;
}

bool sup_stream_disarm(struct sup_stream *r)
{
	if (r->src)
		return r->src->disarm(r->src_ctx);
	return atomic_exchange(&r->armed, false);
}

void conbuf_append(struct conbuf *b, const char *p, size_t n)
{
	if (!b->cap)
		return;
	for (size_t i = 0; i < n; i++)
		b->data[(b->total + i) % b->cap] = p[i];
	b->total += n;
}

void conbuf_free(struct conbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int sup_console_open(struct sup *s, const char *name, size_t history, bool follow,
		     struct sup_stream **out, struct cerr *e)
{
	struct sup_stream *r = calloc(1, sizeof(*r));
	struct vmrt *vm;

	if (!r)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	vm = sup_vm_lock_name(s, name, e);
	if (!vm) {
		free(r);
		return -1;
	}
	r->s = s;
	r->vm = vm;
	r->follow = follow;
	history = MIN(history, (size_t)MIN(vm->con.total, (uint64_t)vm->con.cap));
	r->pos = vm->con.total - history;
	/* The reader keeps the reference until sup_stream_close. */
	pthread_mutex_unlock(&vm->lock);
	*out = r;
	return 0;
}

int sup_console_input(struct sup *s, const char *name, const void *data, size_t len,
		      struct cerr *e)
{
	struct vmrt *vm;
	size_t off = 0;
	int ret = 0;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm) {
		return -1;
	} else if (vm->console_fd < 0 || (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		ret = cerr_set(e, CERR_STATE, "state", "cannot send console input to a VM that is %s",
			       vm_state_name(vm->state));
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	} else {
		/* The UART reads its socket as the guest drains it: small writes
		 * that do not fit now are refused rather than blocking cellad. */
		while (off < len) {
			ssize_t n = send(vm->console_fd, (const char *)data + off, len - off,
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n <= 0) {
				ret = cerr_set(e, CERR_UNAVAILABLE, "", "console input: %s",
					       n < 0 ? strerror(errno) : "closed");
				break;
			}
			off += (size_t)n;
		}
	}
	sup_vm_unlock(s, vm);
	return ret;
}

int sup_events_open(struct sup *s, int64_t since, const char *vm_filter, bool follow,
		    struct sup_stream **out)
{
	struct sup_stream *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->s = s;
	r->follow = follow;
	pthread_mutex_lock(&s->ev_lock);
	r->seq = since < 0 ? s->next_seq : since + 1;
	if (r->seq < s->next_seq - SUP_EVENTS)
		r->seq = s->next_seq - SUP_EVENTS;
	if (r->seq < 1)
		r->seq = 1;
	pthread_mutex_unlock(&s->ev_lock);
	snprintf(r->vm_filter, sizeof(r->vm_filter), "%s", vm_filter ? vm_filter : "");
	*out = r;
	return 0;
}

static bool console_ended(struct vmrt *vm)
{
	return vm->deleted || (vm->console_fd < 0 && vm->state != VS_STARTING &&
			       vm->state != VS_RUNNING && vm->state != VS_PAUSED &&
			       vm->state != VS_STOPPING);
}

/* Copy available bytes (the console's VM lock, or the event lock, held). */
static size_t stream_take(struct sup_stream *r, char *buf, size_t max)
{
	struct sup *s = r->s;
	size_t n = 0;

	if (r->vm) {
		struct conbuf *b = &r->vm->con;

		if (b->total - r->pos > b->cap)
			r->pos = b->total - b->cap; /* overrun: skip what was overwritten */
		while (n < max && r->pos < b->total) {
			buf[n++] = b->data[r->pos % b->cap];
			r->pos++;
		}
		return n;
	}
	while (n < max) {
		const char *line;
		size_t len;

		if (!r->pending) {
			struct sup_event *ev;

			if (r->seq < s->next_seq - SUP_EVENTS)
				r->seq = s->next_seq - SUP_EVENTS;
			if (r->seq >= s->next_seq)
				break;
			ev = &s->events[r->seq % SUP_EVENTS];
			r->seq++;
			if (!ev->line || (r->vm_filter[0] && strcmp(ev->vm, r->vm_filter)))
				continue;
			r->pending = strdup(ev->line);
			r->pending_off = 0;
			if (!r->pending)
				break;
		}
		line = r->pending + r->pending_off;
		len = MIN(strlen(line), max - n);
		memcpy(buf + n, line, len);
		n += len;
		r->pending_off += len;
		if (!r->pending[r->pending_off]) {
			free(r->pending);
			r->pending = NULL;
		}
	}
	return n;
}

/* Whether a read would not wait: data, the end, or cellad stopping (the
 * reader's lock held). */
static bool stream_ready(struct sup_stream *r)
{
	struct sup *s = r->s;

	if (s->shutting_down || !r->follow)
		return true;
	if (r->vm)
		return r->pos < r->vm->con.total || console_ended(r->vm);
	return r->pending || r->seq < s->next_seq;
}

ssize_t sup_stream_read(struct sup_stream *r, char *buf, size_t max, int timeout_ms)
{
	struct sup *s = r->s;
	struct timespec dl = deadline_after_ms(timeout_ms);
	size_t n;

	if (r->src)
		return s->shutting_down ? -1 : r->src->read(r->src_ctx, buf, max, timeout_ms);

	/* A console waits on its VM, the event stream on the event ring. */
	pthread_mutex_t *lock = r->vm ? &r->vm->lock : &s->ev_lock;
	pthread_cond_t *cond = r->vm ? &r->vm->changed : &s->ev_changed;

	pthread_mutex_lock(lock);
	for (;;) {
		n = stream_take(r, buf, max);
		if (n || s->shutting_down)
			break;
		if (!r->follow || (r->vm && console_ended(r->vm)))
			break;
		if (pthread_cond_timedwait(cond, lock, &dl) == ETIMEDOUT) {
			n = stream_take(r, buf, max);
			pthread_mutex_unlock(lock);
			return (ssize_t)n;
		}
	}
	pthread_mutex_unlock(lock);
	return n ? (ssize_t)n : -1;
}

void sup_stream_close(struct sup_stream *r)
{
	if (!r)
		return;
	if (r->src) {
		r->src->close(r->src_ctx);
		free(r);
		return;
	}
	if (r->wake) {
		pthread_mutex_lock(reader_lock(r));
		for (struct sup_stream **pp = reader_list(r); *pp; pp = &(*pp)->next_reader) {
			if (*pp == r) {
				*pp = r->next_reader;
				break;
			}
		}
		pthread_mutex_unlock(reader_lock(r));
	}
	if (r->vm)
		sup_vm_unref(r->s, r->vm);
	free(r->pending);
	free(r);
}
