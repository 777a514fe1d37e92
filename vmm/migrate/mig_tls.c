/* mig_tls.c: TLS 1.3 with mutual authentication for the migration stream. */
#include "migrate/mig_tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "migrate/migstream.h"
#include "migrate/mig_tls_ops.h"

struct mig_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	uint64_t bytes_out;
	char peer[256];
	char err[256];
	uint8_t *sendbuf; /* header + payload of the record being sent */
	size_t sendcap;
};

static void ssl_error_text(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();
	char s[200] = "";

	if (e)
		ERR_error_string_n(e, s, sizeof(s));
	ERR_clear_error();
	snprintf(buf, len, "%s%s%s", what, s[0] ? ": " : "", s);
}

/* Every certificate of a PEM bundle into the verify store. */
static int load_ca_pem(SSL_CTX *ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509 *x;
	int n = 0;

	if (!bio)
		return -ENOMEM;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error(); /* the read past the last certificate */
	BIO_free(bio);
	return n ? 0 : -EINVAL;
}

/* The certificate (and any chain after it) and the key, from PEM text. */
static int load_cert_pem(SSL_CTX *ctx, const char *cert, const char *key)
{
	BIO *bio = BIO_new_mem_buf(cert, -1);
	EVP_PKEY *pk = NULL;
	X509 *x;
	int ret = -EINVAL;

	if (!bio)
		return -ENOMEM;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x && SSL_CTX_use_certificate(ctx, x) == 1) {
		X509 *extra;

		ret = 0;
		while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
			if (SSL_CTX_add0_chain_cert(ctx, extra) != 1)
				X509_free(extra);
		ERR_clear_error();
	}
	X509_free(x);
	BIO_free(bio);
	if (ret)
		return ret;
	bio = BIO_new_mem_buf(key, -1);
	if (!bio)
		return -ENOMEM;
	pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pk || SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		ret = -EINVAL;
	EVP_PKEY_free(pk);
	return ret;
}

static SSL_CTX *make_ctx(bool server, const struct mig_tls_cfg *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	bool ok;

	if (!ctx) {
		ssl_error_text(err, errlen, "TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* Both sides must present a certificate the CA signed. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (cfg->ca_pem)
		ok = load_ca_pem(ctx, cfg->ca_pem) == 0;
	else
		ok = cfg->ca_file && SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) == 1;
	if (!ok) {
		ssl_error_text(err, errlen, "TLS CA certificate cannot be loaded");
		goto fail;
	}
	if (cfg->cert_pem && cfg->key_pem)
		ok = load_cert_pem(ctx, cfg->cert_pem, cfg->key_pem) == 0;
	else
		ok = cfg->cert_file && cfg->key_file &&
		     SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) == 1 &&
		     SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) == 1 &&
		     SSL_CTX_check_private_key(ctx) == 1;
	if (!ok) {
		ssl_error_text(err, errlen, "TLS certificate or key cannot be loaded");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void set_timeouts(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	int one = 1, buf = 4 << 20;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on AF_UNIX: fine */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

int mig_conn_open(struct mig_conn **out, int fd, bool server, const struct mig_tls_cfg *cfg,
		  unsigned timeout_ms, char *err, size_t errlen)
{
	struct mig_conn *c = calloc(1, sizeof(*c));
	X509 *peer;
	int r;

	if (!c) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	set_timeouts(fd, timeout_ms);
	c->ctx = make_ctx(server, cfg, err, errlen);
	if (!c->ctx)
		goto fail;
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		ssl_error_text(err, errlen, "TLS session");
		goto fail;
	}
	if (cfg->peer_name && cfg->peer_name[0] && SSL_set1_host(c->ssl, cfg->peer_name) != 1) {
		ssl_error_text(err, errlen, "TLS peer name");
		goto fail;
	}
	if (!server && cfg->peer_name && cfg->peer_name[0])
		SSL_set_tlsext_host_name(c->ssl, cfg->peer_name);
	r = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
	if (r != 1) {
		long v = SSL_get_verify_result(c->ssl);
		int e = SSL_get_error(c->ssl, r);

		if (v != X509_V_OK)
			snprintf(err, errlen, "TLS handshake failed: peer certificate: %s",
				 X509_verify_cert_error_string(v));
		else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			snprintf(err, errlen, "TLS handshake failed: %s",
				 errno ? strerror(errno) : "connection closed by the peer");
		else
			ssl_error_text(err, errlen, "TLS handshake failed");
		goto fail;
	}
	peer = SSL_get1_peer_certificate(c->ssl);
	if (!peer) {
		snprintf(err, errlen, "TLS: the peer presented no certificate");
		goto fail;
	}
	X509_NAME_oneline(X509_get_subject_name(peer), c->peer, sizeof(c->peer));
	X509_free(peer);
	*out = c;
	return 0;
fail:
	mig_conn_close(c);
	return -ECONNREFUSED;
}

/* A failed SSL_read/SSL_write as -errno, with the reason kept. */
static int io_error(struct mig_conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);

	if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(c->err, sizeof(c->err), "the peer closed the connection");
		return -ECONNRESET;
	}
	if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		int en = errno;

		if (en == EAGAIN || en == EWOULDBLOCK)
			en = ETIMEDOUT;
		if (!en)
			en = ECONNRESET; /* EOF without close_notify */
		snprintf(c->err, sizeof(c->err), "%s", strerror(en));
		return -en;
	}
	ssl_error_text(c->err, sizeof(c->err), "TLS");
	return -EPROTO;
}

int mig_conn_write(struct mig_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);

		if (n <= 0)
			return io_error(c, n);
		p += n;
		len -= (size_t)n;
		c->bytes_out += (uint64_t)n;
	}
	return 0;
}

int mig_conn_read(struct mig_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		int n = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);

		if (n <= 0)
			return io_error(c, n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

uint8_t *mig_conn_reserve(struct mig_conn *c, uint32_t len)
{
	size_t need = MIG_HDR_LEN + (size_t)len;

	if (need > c->sendcap) {
		uint8_t *b = realloc(c->sendbuf, need);

		if (!b)
			return NULL;
		c->sendbuf = b;
		c->sendcap = need;
	}
	return c->sendbuf + MIG_HDR_LEN;
}

int mig_conn_send_reserved(struct mig_conn *c, uint16_t type, uint32_t len)
{
	/* One SSL_write per record: fewer, fuller TLS records. */
	if (MIG_HDR_LEN + (size_t)len > c->sendcap)
		return -EINVAL;
	mig_hdr_put(c->sendbuf, type, len);
	return mig_conn_write(c, c->sendbuf, MIG_HDR_LEN + (size_t)len);
}

int mig_conn_send(struct mig_conn *c, uint16_t type, const void *payload, uint32_t len)
{
	uint8_t *p = mig_conn_reserve(c, len);

	if (!p)
		return -ENOMEM;
	if (len)
		memcpy(p, payload, len);
	return mig_conn_send_reserved(c, type, len);
}

const char *mig_conn_peer(const struct mig_conn *c)
{
	return c->peer;
}

const char *mig_conn_error(const struct mig_conn *c)
{
	return c->err[0] ? c->err : "unknown error";
}

uint64_t mig_conn_bytes_out(const struct mig_conn *c)
{
	return c->bytes_out;
}

void mig_conn_abort(struct mig_conn *c)
{
	if (c)
		shutdown(c->fd, SHUT_RDWR);
}

void mig_conn_close(struct mig_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* close_notify, without waiting for the peer's. */
		SSL_set_shutdown(c->ssl, SSL_RECEIVED_SHUTDOWN);
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	ERR_clear_error();
	free(c->sendbuf);
	free(c);
}

/* The module's one exported symbol (built with -fvisibility=hidden). */
__attribute__((visibility("default"))) const struct mig_tls_ops cella_tls_ops = {
	.abi = MIG_TLS_ABI,
	.open = mig_conn_open,
	.write = mig_conn_write,
	.read = mig_conn_read,
	.send = mig_conn_send,
	.reserve = mig_conn_reserve,
	.send_reserved = mig_conn_send_reserved,
	.peer = mig_conn_peer,
	.error = mig_conn_error,
	.bytes_out = mig_conn_bytes_out,
	.close = mig_conn_close,
	.abort = mig_conn_abort,
};
