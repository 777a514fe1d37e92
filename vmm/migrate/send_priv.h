/* send_priv.h: the source side's private state, shared by send.c (the
 * rounds) and send_ctl.c (request parsing, throttle). */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "migrate/dirty.h"
#include "migrate/migrate.h"
#include "migrate/storage.h"

/* Pages being gathered into one PAGES record (built in the connection's
 * send buffer) and zero pages into one ZERO record. */
struct mig_batch {
	uint8_t *buf;     /* PAGES payload: n, 0, MIG_PAGES_MAX addresses, data */
	uint32_t n;
	uint8_t *zero;    /* ZERO payload */
	uint32_t nzero;
};

struct migration {
	struct vm *vm;
	migrate_done_fn done;
	void *opaque;
	pthread_t thread;
	bool thread_started;
	bool running;          /* until done() */
	volatile bool cancel;
	int done_fd;           /* eventfd: the thread has finished */

	/* Request. */
	char *host;
	unsigned port;
	int sock_fd;           /* passed socket, or -1 */
	struct mig_tls_cfg tls;
	char *tls_buf[4];      /* owned copies of cert, key, ca, name */
	unsigned downtime_ms, max_rounds;
	uint64_t max_bw;       /* bytes/s, 0: unlimited */
	bool include_storage;

	/* Work. */
	struct mig_conn *conn;
	struct mig_dirty dirty;
	struct mig_batch batch;
	struct mig_storage storage; /* include_storage: the disks' copy */
	uint64_t bw_t0, bw_bytes0;
	unsigned slow_rounds;
	uint64_t sync_token;
	uint64_t expected_ns;
	pthread_t throttle_thread;
	bool throttle_started;
	volatile bool throttle_quit;

	/* Progress (lock) and result. */
	pthread_mutex_t lock;
	const char *phase;
	unsigned round, throttle;
	uint64_t bytes, remaining, rate, pages_sent, zero_sent, state_bytes;
	uint64_t t0, total_ns, pause_ns, pause_mono, resume_ns, downtime_ns;
	bool paused, was_paused;
	int result;
	char error[256];
};

/* Fill the request fields from the control command. 0 or -EINVAL (err). */
int mig_params_parse(struct migration *m, json_t *req, char *err, size_t errlen) __must_check;
void mig_params_free(struct migration *m);
/* Set the vCPU throttle (0 turns it off); starts the kicker thread. */
void mig_throttle_set(struct migration *m, unsigned pct);
void mig_throttle_stop(struct migration *m);
