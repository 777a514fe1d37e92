/* send_ctl.c: the "migrate" request's parameters, and the vCPU throttle
 * (auto-converge) of the source side. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "migrate/send_priv.h"
#include "vcpu.h"
#include "vm.h"

static int get_uint(json_t *req, const char *key, uint64_t max, uint64_t *out, char *err,
		    size_t errlen)
{
	json_t *v = json_object_get(req, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		snprintf(err, errlen, "%s: expected an integer from 0 to %llu", key,
			 (unsigned long long)max);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_str(json_t *obj, const char *key, char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s: expected a string", key);
		return -EINVAL;
	}
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

int mig_params_parse(struct migration *m, json_t *req, char *err, size_t errlen)
{
	static const char *const tls_keys[] = { "cert", "key", "ca", "name" };
	json_t *tls = json_object_get(req, "tls"), *st = json_object_get(req, "include_storage");
	uint64_t port = 0, v;
	int ret;

	if ((ret = get_str(req, "host", &m->host, err, errlen)) ||
	    (ret = get_uint(req, "port", 65535, &port, err, errlen)))
		return ret;
	if (m->sock_fd < 0 && (!m->host || !port)) {
		snprintf(err, errlen, "host and port (or an attached socket, fd) are required");
		return -EINVAL;
	}
	/* Under its seccomp allowlist the worker cannot make a socket: a
	 * connect would end the worker, and the VM with it. */
	if (m->sock_fd < 0 && m->vm && m->vm->no_new_sockets) {
		snprintf(err, errlen, "host and port: this worker runs under its system-call "
			 "allowlist and opens no sockets; attach a connected socket (fd) instead");
		return -EPERM;
	}
	m->port = (unsigned)port;
	v = m->downtime_ms;
	if ((ret = get_uint(req, "downtime_ms", 60000, &v, err, errlen)))
		return ret;
	m->downtime_ms = (unsigned)(v ? v : 1);
	v = m->max_rounds;
	if ((ret = get_uint(req, "max_rounds", 1000, &v, err, errlen)))
		return ret;
	m->max_rounds = (unsigned)(v ? v : 1);
	if ((ret = get_uint(req, "max_bandwidth", UINT64_MAX >> 8, &m->max_bw, err, errlen)))
		return ret;
	if (st && !json_is_boolean(st)) {
		snprintf(err, errlen, "include_storage: expected true or false");
		return -EINVAL;
	}
	m->include_storage = st && json_is_true(st);
	if (!json_is_object(tls)) {
		snprintf(err, errlen, "tls: expected an object with cert, key, ca (PEM) and name");
		return -EINVAL;
	}
	for (unsigned i = 0; i < 4; i++) {
		if ((ret = get_str(tls, tls_keys[i], &m->tls_buf[i], err, errlen)))
			return ret;
		if (i < 3 && !m->tls_buf[i]) {
			snprintf(err, errlen, "tls.%s: PEM text required", tls_keys[i]);
			return -EINVAL;
		}
	}
	m->tls.cert_pem = m->tls_buf[0];
	m->tls.key_pem = m->tls_buf[1];
	m->tls.ca_pem = m->tls_buf[2];
	/* The destination's certificate must name the host we dial, unless
	 * the request names it otherwise. */
	m->tls.peer_name = m->tls_buf[3] ? m->tls_buf[3] : m->host;
	return 0;
}

void mig_params_free(struct migration *m)
{
	free(m->host);
	for (unsigned i = 0; i < 4; i++) {
		if (m->tls_buf[i]) /* keys: wipe before freeing */
			explicit_bzero(m->tls_buf[i], strlen(m->tls_buf[i]));
		free(m->tls_buf[i]);
	}
}

/* Kick every vCPU once per period, so that each reaches its pause point
 * (where it sleeps its share) even when the guest never exits. */
static void *throttle_thread(void *arg)
{
	struct migration *m = arg;
	struct timespec ts = { 0, (long)VCPU_THROTTLE_PERIOD_NS };

	pthread_setname_np(pthread_self(), "throttle");
	if (vm_thread_seccomp(m->vm->throttle_filter))
		return NULL; /* the migration goes on, unthrottled */
	while (!m->throttle_quit && !vm_exiting(m->vm)) {
		for (unsigned i = 0; i < m->vm->nr_vcpus; i++)
			vcpu_kick(&m->vm->vcpus[i]);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

void mig_throttle_set(struct migration *m, unsigned pct)
{
	atomic_store(&m->vm->throttle_pct, pct);
	pthread_mutex_lock(&m->lock);
	if (pct && pct != m->throttle)
		log_info("migration: the guest dirties memory faster than the link drains it: "
			 "vCPUs throttled to %u%%", 100 - pct);
	m->throttle = pct;
	pthread_mutex_unlock(&m->lock);
	if (pct && !m->throttle_started) {
		m->throttle_quit = false;
		m->throttle_started = pthread_create(&m->throttle_thread, NULL, throttle_thread, m) == 0;
	} else if (!pct) {
		mig_throttle_stop(m);
	}
}

void mig_throttle_stop(struct migration *m)
{
	if (m->vm)
		atomic_store(&m->vm->throttle_pct, 0);
	if (m->throttle_started) {
		m->throttle_quit = true;
		pthread_join(m->throttle_thread, NULL);
		m->throttle_started = false;
	}
}
