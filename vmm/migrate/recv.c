/* recv.c: the destination side of live migration (cella-vm --incoming). */
#include "fdspec.h"
#include "migrate/migrate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "migrate/migstream.h"
#include "migrate/storage.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

#define MIG_IO_TIMEOUT_MS 30000
#define MIG_PEM_MAX (256 * 1024)

struct mig_incoming {
	int listen_fd;      /* listening socket, or -1 */
	int conn_fd;        /* an inherited connected socket, or -1 */
	char *pem[3];       /* cert, key, CA */
	char *peer_name;
	struct mig_conn *conn;
	struct vm *vm;
	struct mig_rx rx;
	uint8_t *buf;
	uint64_t t_first_ns; /* realtime when the connection was accepted */
	uint64_t load_ns;    /* vm_state_load's time */
	struct mig_storage_rx disks; /* include_storage: the disks written */
};

static int read_pem(const char *path, char **out, char *err, size_t errlen)
{
	int fd = fdspec_open(path, O_RDONLY, 0, FDSPEC_REG, err, errlen);
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return -EINVAL;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > MIG_PEM_MAX) {
		snprintf(err, errlen, "%s: not a PEM file of a sensible size", path);
		close(fd);
		return -EINVAL;
	}
	*out = calloc(1, (size_t)st.st_size + 1);
	n = *out ? pread(fd, *out, (size_t)st.st_size, 0) : -1;
	close(fd);
	if (n != st.st_size) {
		snprintf(err, errlen, "%s: cannot read it", path);
		return -EIO;
	}
	return 0;
}

/* "tcp:ADDR:PORT" (ADDR may be [v6], empty or * for any) -> listening socket. */
static int listen_tcp(const char *spec, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	size_t hl;
	int fd, one = 1, ret;

	if (!colon || !colon[1]) {
		snprintf(err, errlen, "--incoming tcp:ADDR:PORT: no port in '%s'", spec);
		return -EINVAL;
	}
	hl = (size_t)(colon - spec);
	if (hl >= sizeof(host))
		return -ENAMETOOLONG;
	memcpy(host, spec, hl);
	host[hl] = 0;
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	ret = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, colon + 1, &hints, &res);
	if (ret) {
		snprintf(err, errlen, "--incoming %s: %s", spec, gai_strerror(ret));
		return -EINVAL;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		snprintf(err, errlen, "--incoming %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return ret;
	}
	freeaddrinfo(res);
	return fd;
}

int migrate_incoming_open(struct mig_incoming **out, const char *spec, const char *cert_file,
			  const char *key_file, const char *ca_file, const char *peer_name,
			  char *err, size_t errlen)
{
	struct mig_incoming *in = calloc(1, sizeof(*in));
	const char *files[3] = { cert_file, key_file, ca_file };
	int ret = 0;

	if (!in)
		return -ENOMEM;
	in->listen_fd = in->conn_fd = -1;
	for (unsigned i = 0; i < 3 && !ret; i++) {
		if (!files[i]) {
			snprintf(err, errlen, "--incoming needs --tls-cert, --tls-key and --tls-ca");
			ret = -EINVAL;
		} else {
			ret = read_pem(files[i], &in->pem[i], err, errlen);
		}
	}
	if (!ret && peer_name && !(in->peer_name = strdup(peer_name)))
		ret = -ENOMEM;
	if (!ret && !strncmp(spec, "tcp:", 4)) {
		ret = listen_tcp(spec + 4, err, errlen);
		in->listen_fd = ret;
		ret = ret < 0 ? ret : 0;
	} else if (!ret && !strncmp(spec, "fd:", 3)) {
		char *end;
		long n = strtol(spec + 3, &end, 10);
		int type = 0, acc = 0;
		socklen_t tl = sizeof(type), al = sizeof(acc);

		if (*end || n < 0 || n > 65535 ||
		    getsockopt((int)n, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
			snprintf(err, errlen, "--incoming %s: not an inherited stream socket", spec);
			ret = -EBADF;
		} else {
			fcntl((int)n, F_SETFD, FD_CLOEXEC);
			getsockopt((int)n, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al);
			if (acc)
				in->listen_fd = (int)n;
			else
				in->conn_fd = (int)n;
		}
	} else if (!ret) {
		snprintf(err, errlen, "--incoming: expected tcp:ADDR:PORT or fd:N, got '%s'", spec);
		ret = -EINVAL;
	}
	if (ret) {
		migrate_incoming_close(in);
		return ret;
	}
	*out = in;
	return 0;
}

/* Accept the one connection, or give up on a host signal. */
static int wait_connection(struct mig_incoming *in, int signal_fd, char *err, size_t errlen)
{
	struct pollfd p[2] = { { .fd = in->listen_fd, .events = POLLIN },
			       { .fd = signal_fd, .events = POLLIN } };
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	int fd;

	if (in->conn_fd >= 0) {
		fd = in->conn_fd;
		in->conn_fd = -1;
		return fd;
	}
	for (;;) {
		int r = poll(p, signal_fd >= 0 ? 2 : 1, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "waiting for the source: %s", strerror(errno));
			return -errno;
		}
		if (signal_fd >= 0 && p[1].revents) {
			snprintf(err, errlen, "stopped by a signal while waiting for the source");
			return -EINTR;
		}
		fd = accept4(in->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno != EINTR && errno != ECONNABORTED) {
			snprintf(err, errlen, "accept: %s", strerror(errno));
			return -errno;
		}
	}
	/* One source per incoming worker. */
	close(in->listen_fd);
	in->listen_fd = -1;
	return fd;
}

static int on_hello(void *opaque, const struct mig_hello *h, char *why, size_t whylen)
{
	struct mig_incoming *in = opaque;

	/* More: hot-plugged on the source; the state's machine section adds
	 * them here (vm_state_load), within this VM's cpus_max. */
	if (h->nr_vcpus < in->vm->nr_vcpus || h->nr_vcpus > config_cpus_possible(in->vm->cfg)) {
		snprintf(why, whylen, "source has %u vCPUs, this VM %u", h->nr_vcpus,
			 in->vm->nr_vcpus);
		return -EINVAL;
	}
	return 0;
}

static int on_disks(void *opaque, uint32_t n, const uint64_t *sizes, char *why, size_t whylen)
{
	struct mig_incoming *in = opaque;
	int ret = mig_storage_rx_init(&in->disks, in->vm, n, sizes, why, whylen);

	if (!ret)
		log_info("migration: the source sends the contents of %u disks", n);
	return ret;
}

static int on_disk(void *opaque, uint32_t disk, uint64_t off, const uint8_t *data, uint32_t len,
		   char *why, size_t whylen)
{
	struct mig_incoming *in = opaque;

	return mig_storage_rx_write(&in->disks, disk, off, data, len, why, whylen);
}

static int on_disk_zero(void *opaque, uint32_t disk, uint64_t off, uint64_t len, char *why,
			size_t whylen)
{
	struct mig_incoming *in = opaque;

	return mig_storage_rx_zero(&in->disks, disk, off, len, why, whylen);
}

static int on_state(void *opaque, const uint8_t *blob, uint32_t len, char *why, size_t whylen)
{
	struct mig_incoming *in = opaque;
	struct state_reader r;
	int ret;

	uint64_t t0 = mig_realtime_ns();

	/* Every disk record came before the state: make them durable now,
	 * before the ack lets the source go. */
	ret = mig_storage_rx_flush(&in->disks, why, whylen);
	if (ret)
		return ret;
	state_reader_init(&r, blob, len);
	ret = vm_state_load(in->vm, &r, STATEFILE_VERSION);
	in->load_ns = mig_realtime_ns() - t0;
	if (ret)
		snprintf(why, whylen, "%s (details in the log)", strerror(-ret));
	return ret;
}

static const struct mig_rx_ops rx_ops = { .hello = on_hello, .state = on_state,
					  .disk = on_disk, .disks = on_disks,
					  .disk_zero = on_disk_zero };

static void send_status(struct mig_incoming *in, uint16_t type, int err, const char *msg)
{
	uint8_t p[16 + MIG_MSG_MAX];
	uint32_t len = mig_status_put(p, type, err < 0 ? -err : err, mig_realtime_ns(), msg);

	if (mig_conn_send(in->conn, type, p, len))
		log_debug("migration: cannot answer the source: %s", mig_conn_error(in->conn));
}

static int receive_records(struct mig_incoming *in, char *err, size_t errlen)
{
	for (;;) {
		uint8_t hdr[MIG_HDR_LEN];
		uint16_t type = 0, flags;
		uint32_t len;
		int ret = mig_conn_read(in->conn, hdr, sizeof(hdr));

		if (!ret) {
			mig_hdr_get(hdr, &type, &flags, &len);
			ret = mig_rx_check_hdr(&in->rx, type, flags, len);
			if (!ret && (ret = mig_conn_read(in->conn, in->buf, len)))
				snprintf(in->rx.err, sizeof(in->rx.err), "%s",
					 mig_conn_error(in->conn));
			else if (!ret)
				ret = mig_rx_record(&in->rx, type, in->buf, len);
		} else {
			snprintf(in->rx.err, sizeof(in->rx.err), "%s", mig_conn_error(in->conn));
		}
		if (ret < 0) {
			snprintf(err, errlen, "incoming migration failed: %s", in->rx.err);
			if (ret != -ECONNABORTED && ret != -ECONNRESET && ret != -ETIMEDOUT)
				send_status(in, type == MIG_REC_HELLO || type == MIG_REC_DISKS
						    ? MIG_REC_READY : MIG_REC_ERROR,
					    ret, in->rx.err);
			return ret;
		}
		if (type == MIG_REC_HELLO || type == MIG_REC_DISKS)
			send_status(in, MIG_REC_READY, 0, NULL);
		/* Disk data is flushed before the echo: the source waits for it
		 * while the guest still runs, so the final flush is short. */
		if (type == MIG_REC_SYNC && mig_storage_rx_flush(&in->disks, in->rx.err,
								 sizeof(in->rx.err))) {
			snprintf(err, errlen, "incoming migration failed: %s", in->rx.err);
			send_status(in, MIG_REC_ERROR, -EIO, in->rx.err);
			return -EIO;
		}
		if (type == MIG_REC_SYNC && mig_conn_send(in->conn, MIG_REC_SYNC, in->buf, 8)) {
			snprintf(err, errlen, "incoming migration failed: %s",
				 mig_conn_error(in->conn));
			return -ECONNRESET;
		}
		if (ret == 1)
			return 0;
	}
}

int migrate_incoming_receive(struct mig_incoming *in, struct vm *vm, int signal_fd, char *err,
			     size_t errlen)
{
	struct mig_tls_cfg tls = { .cert_pem = in->pem[0], .key_pem = in->pem[1],
				   .ca_pem = in->pem[2], .peer_name = in->peer_name };
	int fd, ret;

	in->vm = vm;
	log_info("migration: waiting for the source");
	fd = wait_connection(in, signal_fd, err, errlen);
	if (fd < 0)
		return fd;
	in->t_first_ns = mig_realtime_ns();
	ret = mig_conn_open(&in->conn, fd, true, &tls, MIG_IO_TIMEOUT_MS, err, errlen);
	if (ret)
		return ret;
	log_info("migration: source %s connected", mig_conn_peer(in->conn));
	in->buf = malloc(MIG_REC_MAX);
	if (!in->buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	mig_rx_init(&in->rx, &vm->mem, &rx_ops, in);
	ret = receive_records(in, err, errlen);
	free(in->buf);
	in->buf = NULL;
	if (!ret)
		log_info("migration: received %llu pages, %llu zero pages, %u rounds, %llu bytes; "
			 "disks: %llu bytes of data, %llu bytes zeroed",
			 (unsigned long long)in->rx.pages, (unsigned long long)in->rx.zero_pages,
			 in->rx.rounds, (unsigned long long)in->rx.bytes,
			 (unsigned long long)in->rx.disk_bytes,
			 (unsigned long long)in->rx.disk_zero_bytes);
	return ret;
}

int migrate_incoming_ack(struct mig_incoming *in)
{
	uint64_t now = mig_realtime_ns();
	uint8_t p[16 + MIG_MSG_MAX];
	uint32_t len = mig_status_put(p, MIG_REC_ACK, 0, now, "running");
	int ret = mig_conn_send(in->conn, MIG_REC_ACK, p, len);

	if (ret) {
		log_err("migration: cannot acknowledge to the source (%s); not running this copy",
			mig_conn_error(in->conn));
		return ret;
	}
	log_info("migration: incoming migration complete, downtime %.3f ms (state load %.1f ms; "
		 "source paused at %llu, resumed here at %llu, CLOCK_REALTIME ns)",
		 now > in->rx.pause_ns ? (double)(now - in->rx.pause_ns) / 1e6 : 0.0,
		 (double)in->load_ns / 1e6,
		 (unsigned long long)in->rx.pause_ns, (unsigned long long)now);
	return 0;
}

void migrate_incoming_close(struct mig_incoming *in)
{
	if (!in)
		return;
	mig_conn_close(in->conn);
	if (in->listen_fd >= 0)
		close(in->listen_fd);
	if (in->conn_fd >= 0)
		close(in->conn_fd);
	for (unsigned i = 0; i < 3; i++) {
		if (in->pem[i])
			explicit_bzero(in->pem[i], strlen(in->pem[i]));
		free(in->pem[i]);
	}
	free(in->peer_name);
	free(in->buf);
	free(in);
}
