/* tls_loader.c: the mig_conn_* calls of the worker, forwarded to the TLS
 * module (cella-tls.so, mig_tls.c linked with OpenSSL), which is dlopen()ed
 * on first use or up front (mig_tls_load) before a sandbox hides the file
 * system. Linking OpenSSL into cella-vm would cost every worker, migrating
 * or not, about 1.7 MiB of resident library pages and 1.5 ms of start-up.
 *
 * Where the module is looked for, first found wins:
 *   $CELLA_TLS_MODULE (a path), next to the cella-vm executable (the build
 *   tree), then CELLA_TLS_MODULE_DIR (the install location, set by Meson). */
#include "migrate/mig_tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/mig_tls_ops.h"
#include "bgthread.h"

#define TLS_MODULE_NAME "cella-tls.so"

struct tls_module {
	pthread_mutex_t lock;
	const struct mig_tls_ops *ops; /* set once, never cleared */
	/* mig_tls_preload_start's thread and its answer (main thread only). */
	pthread_t preload;
	bool preloading;
	int preload_ret;
	char preload_err[512];
};

/* Process-wide on purpose: what dlopen() loads belongs to the process. */
static struct tls_module *tls_module(void)
{
	static struct tls_module m = {.lock = PTHREAD_MUTEX_INITIALIZER};

	return &m;
}

static const struct mig_tls_ops *try_path(const char *path, char *why, size_t whylen)
{
	const struct mig_tls_ops *ops;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(why, whylen, "%s", dlerror());
		return NULL;
	}
	ops = dlsym(h, "cella_tls_ops");
	if (!ops || ops->abi != MIG_TLS_ABI) {
		snprintf(why, whylen, "%s: not a cella TLS module of this version", path);
		dlclose(h);
		return NULL;
	}
	return ops; /* the handle stays open for the life of the process */
}

/* Directory of the running executable into dir ("" if unknown). */
static void exe_dir(char *dir, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", dir, len - 1);
	char *slash;

	if (n <= 0) {
		dir[0] = 0;
		return;
	}
	dir[n] = 0;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		dir[0] = 0;
}

int mig_tls_load(char *err, size_t errlen)
{
	struct tls_module *m = tls_module();
	char dir[PATH_MAX], path[PATH_MAX + sizeof(TLS_MODULE_NAME) + 1], why[512] = "";
	const char *env = getenv("CELLA_TLS_MODULE");
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (m->ops)
		goto out;
	if (env && *env) {
		m->ops = try_path(env, why, sizeof(why));
	} else {
		exe_dir(dir, sizeof(dir));
		if (dir[0]) {
			snprintf(path, sizeof(path), "%s/%s", dir, TLS_MODULE_NAME);
			if (!access(path, R_OK))
				m->ops = try_path(path, why, sizeof(why));
		}
#ifdef CELLA_TLS_MODULE_DIR
		/* Keep the reason of a module that exists but failed to load. */
		if (!m->ops && !why[0])
			m->ops =
			    try_path(CELLA_TLS_MODULE_DIR "/" TLS_MODULE_NAME, why, sizeof(why));
#endif
		if (!m->ops && !why[0])
			snprintf(why, sizeof(why), "%s not found next to cella-vm",
			         TLS_MODULE_NAME);
	}
	if (!m->ops) {
		snprintf(err, errlen, "cannot load the migration TLS module: %s", why);
		ret = -ENOENT;
	}
out:
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* The loaded table; only called on a connection, which only exists once
 * mig_conn_open succeeded through the module. */
static const struct mig_tls_ops *ops(void)
{
	return tls_module()->ops;
}

int mig_conn_open(struct mig_conn **out, int fd, bool server, const struct mig_tls_cfg *cfg,
                  unsigned timeout_ms, char *err, size_t errlen)
{
	int ret = mig_tls_load(err, errlen);

	if (ret) {
		*out = NULL;
		close(fd); /* taken over, as on any failure */
		return ret;
	}
	return ops()->open(out, fd, server, cfg, timeout_ms, err, errlen);
}

int mig_conn_write(struct mig_conn *c, const void *buf, size_t len)
{
	return ops()->write(c, buf, len);
}

int mig_conn_read(struct mig_conn *c, void *buf, size_t len)
{
	return ops()->read(c, buf, len);
}

int mig_conn_send(struct mig_conn *c, uint16_t type, const void *payload, uint32_t len)
{
	return ops()->send(c, type, payload, len);
}

uint8_t *mig_conn_reserve(struct mig_conn *c, uint32_t len)
{
	return ops()->reserve(c, len);
}

int mig_conn_send_reserved(struct mig_conn *c, uint16_t type, uint32_t len)
{
	return ops()->send_reserved(c, type, len);
}

const char *mig_conn_peer(const struct mig_conn *c)
{
	return ops()->peer(c);
}

const char *mig_conn_error(const struct mig_conn *c)
{
	return ops()->error(c);
}

uint64_t mig_conn_bytes_out(const struct mig_conn *c)
{
	return ops()->bytes_out(c);
}

void mig_conn_close(struct mig_conn *c)
{
	if (c)
		ops()->close(c);
}

void mig_conn_abort(struct mig_conn *c)
{
	if (c)
		ops()->abort(c);
}

static void *preload_main(void *arg)
{
	struct tls_module *m = arg;

	m->preload_ret = mig_tls_load(m->preload_err, sizeof(m->preload_err));
	return NULL;
}

void mig_tls_preload_start(void)
{
	struct tls_module *m = tls_module();

	if (!m->preloading)
		m->preloading = bgthread_create(&m->preload, preload_main, m) == 0;
}

int mig_tls_preload_wait(char *err, size_t errlen)
{
	struct tls_module *m = tls_module();

	if (!m->preloading)
		return mig_tls_load(err, errlen);
	pthread_join(m->preload, NULL);
	m->preloading = false;
	if (m->preload_ret)
		snprintf(err, errlen, "%s", m->preload_err);
	return m->preload_ret;
}

void mig_tls_preload_end(void)
{
	struct tls_module *m = tls_module();

	if (m->preloading) {
		pthread_join(m->preload, NULL);
		m->preloading = false;
	}
}
