/* ca.c: the pool's certificate authority with GnuTLS: keys, certificate
 * requests, host certificates, the CA's pinning hash (ca.h). */
#include "ca.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

static int tls_fail(struct cerr *e, enum cerr_kind kind, const char *field, const char *what,
		    int err)
{
	return cerr_set(e, kind, field, "%s: %s", what, gnutls_strerror(err));
}

/* datum (GnuTLS-allocated) to a malloc'd C string. */
static char *datum_str(gnutls_datum_t *d)
{
	char *s = malloc(d->size + 1);

	if (s) {
		memcpy(s, d->data, d->size);
		s[d->size] = 0;
	}
	gnutls_free(d->data);
	d->data = NULL;
	return s;
}

static gnutls_datum_t pem_datum(const char *pem, size_t len)
{
	return (gnutls_datum_t){ .data = (unsigned char *)(uintptr_t)pem, .size = (unsigned)len };
}

int pool_ca_make_key_csr(const char *name, char **key_pem, char **csr_pem, struct cerr *e)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crq_t crq = NULL;
	gnutls_datum_t d = { 0 };
	int ret;

	*key_pem = *csr_pem = NULL;
	if ((ret = gnutls_x509_privkey_init(&key)) < 0 ||
	    (ret = gnutls_x509_privkey_generate2(key, GNUTLS_PK_ECDSA,
						 GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
						 0, NULL, 0)) < 0 ||
	    (ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
						     GNUTLS_PKCS_PLAIN, &d)) < 0 ||
	    !(*key_pem = datum_str(&d)) || (ret = gnutls_x509_crq_init(&crq)) < 0 ||
	    (ret = gnutls_x509_crq_set_version(crq, 1)) < 0 ||
	    (ret = gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, name,
						 (unsigned)strlen(name))) < 0 ||
	    (ret = gnutls_x509_crq_set_key(crq, key)) < 0 ||
	    (ret = gnutls_x509_crq_sign2(crq, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (ret = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &d)) < 0 ||
	    !(*csr_pem = datum_str(&d))) {
		free(*key_pem);
		*key_pem = NULL;
		tls_fail(e, CERR_INTERNAL, "", "a key and certificate request", ret < 0 ? ret :
			 GNUTLS_E_MEMORY_ERROR);
		ret = -1;
	} else {
		ret = 0;
	}
	if (crq)
		gnutls_x509_crq_deinit(crq);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return ret;
}

static int crq_load(gnutls_x509_crq_t *crq, const char *pem, size_t len, const char *name,
		    struct cerr *e)
{
	gnutls_datum_t d = pem_datum(pem, len);
	char cn[128];
	size_t cl = sizeof(cn);
	int ret;

	if (len > POOL_PEM_MAX)
		return cerr_set(e, CERR_INVALID, "csr", "larger than %u bytes", POOL_PEM_MAX);
	if ((ret = gnutls_x509_crq_init(crq)) < 0)
		return tls_fail(e, CERR_INTERNAL, "", "certificate request", ret);
	if ((ret = gnutls_x509_crq_import(*crq, &d, GNUTLS_X509_FMT_PEM)) < 0)
		return tls_fail(e, CERR_INVALID, "csr", "not a PEM certificate request", ret);
	if ((ret = gnutls_x509_crq_verify(*crq, 0)) < 0)
		return tls_fail(e, CERR_INVALID, "csr", "its signature does not verify", ret);
	if ((ret = gnutls_x509_crq_get_dn_by_oid(*crq, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn,
						 &cl)) < 0)
		return tls_fail(e, CERR_INVALID, "csr", "no subject common name", ret);
	if (strlen(cn) != cl || strcmp(cn, name))
		return cerr_set(e, CERR_INVALID, "csr", "its common name is not the host's name "
				"'%s'", name);
	return 0;
}

int pool_ca_check_csr(const char *csr_pem, size_t len, const char *name, struct cerr *e)
{
	gnutls_x509_crq_t crq = NULL;
	int ret = crq_load(&crq, csr_pem, len, name, e);

	if (crq)
		gnutls_x509_crq_deinit(crq);
	return ret;
}

static int ca_load(gnutls_x509_crt_t *ca, gnutls_x509_privkey_t *key, const char *ca_pem,
		   const char *key_pem, struct cerr *e)
{
	gnutls_datum_t d = pem_datum(ca_pem, strlen(ca_pem));
	unsigned char a[64], b[64];
	size_t al = sizeof(a), bl = sizeof(b);
	unsigned critical;
	int ret;

	if ((ret = gnutls_x509_crt_init(ca)) < 0 ||
	    (ret = gnutls_x509_crt_import(*ca, &d, GNUTLS_X509_FMT_PEM)) < 0)
		return tls_fail(e, CERR_INVALID, "ca_cert", "not a PEM certificate", ret);
	if (gnutls_x509_crt_get_ca_status(*ca, &critical) <= 0)
		return cerr_set(e, CERR_INVALID, "ca_cert", "not a CA certificate");
	if (!key_pem)
		return 0;
	d = pem_datum(key_pem, strlen(key_pem));
	if ((ret = gnutls_x509_privkey_init(key)) < 0 ||
	    (ret = gnutls_x509_privkey_import2(*key, &d, GNUTLS_X509_FMT_PEM, NULL,
					       GNUTLS_PKCS_PLAIN)) < 0)
		return tls_fail(e, CERR_INVALID, "ca_key", "not an unencrypted PEM private key",
				ret);
	if (gnutls_x509_crt_get_key_id(*ca, GNUTLS_KEYID_USE_SHA256, a, &al) < 0 ||
	    gnutls_x509_privkey_get_key_id(*key, GNUTLS_KEYID_USE_SHA256, b, &bl) < 0 ||
	    al != bl || memcmp(a, b, al))
		return cerr_set(e, CERR_INVALID, "ca_key", "not the CA certificate's key");
	return 0;
}

int pool_ca_sign(const char *ca_pem, const char *ca_key_pem, const char *csr_pem,
		 const char *name, const char *ip, char **cert_pem, struct cerr *e)
{
	gnutls_x509_crt_t ca = NULL, crt = NULL;
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crq_t crq = NULL;
	gnutls_datum_t d = { 0 };
	unsigned char serial[16], id[64], addr[16];
	size_t idl = sizeof(id);
	time_t now = time(NULL);
	int ret;

	*cert_pem = NULL;
	if (ca_load(&ca, &key, ca_pem, ca_key_pem, e) ||
	    crq_load(&crq, csr_pem, strlen(csr_pem), name, e)) {
		ret = -1;
		goto out;
	}
	serial[0] = 0;
	if ((ret = gnutls_rnd(GNUTLS_RND_NONCE, serial + 1, sizeof(serial) - 1)) < 0 ||
	    (ret = gnutls_x509_crt_init(&crt)) < 0 ||
	    (ret = gnutls_x509_crt_set_crq(crt, crq)) < 0 ||
	    (ret = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
	    (ret = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
	    (ret = gnutls_x509_crt_set_activation_time(crt, now - 300)) < 0 ||
	    (ret = gnutls_x509_crt_set_expiration_time(crt, now + POOL_CERT_DAYS * 86400L)) < 0 ||
	    (ret = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE |
						      GNUTLS_KEY_KEY_ENCIPHERMENT)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name,
							(unsigned)strlen(name),
							GNUTLS_FSAN_APPEND)) < 0)
		goto tls_err;
	if (ip && inet_pton(AF_INET, ip, addr) == 1 &&
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, addr, 4,
							GNUTLS_FSAN_APPEND)) < 0)
		goto tls_err;
	if (ip && inet_pton(AF_INET6, ip, addr) == 1 &&
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, addr, 16,
							GNUTLS_FSAN_APPEND)) < 0)
		goto tls_err;
	if (gnutls_x509_crt_get_key_id(crt, 0, id, &idl) >= 0 &&
	    (ret = gnutls_x509_crt_set_subject_key_id(crt, id, idl)) < 0)
		goto tls_err;
	idl = sizeof(id);
	if (gnutls_x509_crt_get_subject_key_id(ca, id, &idl, NULL) >= 0 &&
	    (ret = gnutls_x509_crt_set_authority_key_id(crt, id, idl)) < 0)
		goto tls_err;
	if ((ret = gnutls_x509_crt_sign2(crt, ca, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d)) < 0)
		goto tls_err;
	*cert_pem = datum_str(&d);
	ret = *cert_pem ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
	goto out;
tls_err:
	ret = tls_fail(e, CERR_INTERNAL, "", "signing the host certificate", ret);
out:
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (crq)
		gnutls_x509_crq_deinit(crq);
	if (key)
		gnutls_x509_privkey_deinit(key);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	return ret;
}

int pool_ca_hash(const char *ca_pem, const char *key_pem, char *hex, struct cerr *e)
{
	gnutls_x509_crt_t ca = NULL;
	gnutls_x509_privkey_t key = NULL;
	unsigned char id[32];
	size_t idl = sizeof(id);
	int ret = ca_load(&ca, &key, ca_pem, key_pem, e);

	if (!ret && (gnutls_x509_crt_get_key_id(ca, GNUTLS_KEYID_USE_SHA256, id, &idl) < 0 ||
		     idl != sizeof(id)))
		ret = cerr_set(e, CERR_INVALID, "ca_cert", "cannot hash its public key");
	for (size_t i = 0; !ret && i < sizeof(id); i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	if (key)
		gnutls_x509_privkey_deinit(key);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	return ret;
}

int pool_ca_cert_cn(const char *cert_pem, char *cn, size_t len)
{
	gnutls_datum_t d = pem_datum(cert_pem, strlen(cert_pem));
	gnutls_x509_crt_t crt;
	size_t cl = len;
	int ret = -1;

	if (gnutls_x509_crt_init(&crt) < 0)
		return -1;
	if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) >= 0 &&
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cl) >= 0 &&
	    strlen(cn) == cl)
		ret = 0;
	gnutls_x509_crt_deinit(crt);
	return ret;
}
