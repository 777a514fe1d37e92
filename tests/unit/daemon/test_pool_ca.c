/* test_pool_ca.c: the pool's CA and what a host admitting others reads
 * (daemon/pool/ca.c, join_parse.c): keys and requests, signing, the CA's
 * hash, join tokens and join requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "ca.h"
#include "join_parse.h"

/* A self-signed CA (or, ca false, a plain certificate), PEM. */
static void make_ca(bool ca, char **crt_pem, char **key_pem)
{
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
	gnutls_datum_t d;
	unsigned char serial[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	assert_int_equal(gnutls_x509_privkey_init(&key), 0);
	assert_int_equal(gnutls_x509_privkey_generate2(key, GNUTLS_PK_ECDSA,
		GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0), 0);
	assert_int_equal(gnutls_x509_crt_init(&crt), 0);
	assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
						       "test pool CA", 12), 0);
	assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
	assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
	assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
	assert_int_equal(gnutls_x509_crt_set_activation_time(crt, time(NULL) - 60), 0);
	assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 3600), 0);
	assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, ca, -1), 0);
	if (ca)
		assert_int_equal(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN), 0);
	assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
	assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), 0);
	*crt_pem = strndup((char *)d.data, d.size);
	gnutls_free(d.data);
	assert_int_equal(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
							   GNUTLS_PKCS_PLAIN, &d), 0);
	*key_pem = strndup((char *)d.data, d.size);
	gnutls_free(d.data);
	gnutls_x509_crt_deinit(crt);
	gnutls_x509_privkey_deinit(key);
}

static void test_csr(void **state)
{
	char *key, *csr;
	struct cerr e;

	(void)state;
	assert_int_equal(pool_ca_make_key_csr("host-1", &key, &csr, &e), 0);
	assert_non_null(strstr(key, "BEGIN PRIVATE KEY"));
	assert_int_equal(pool_ca_check_csr(csr, strlen(csr), "host-1", &e), 0);
	assert_int_equal(pool_ca_check_csr(csr, strlen(csr), "host-2", &e), -1);
	assert_non_null(strstr(e.reason, "common name"));
	/* A flipped byte in the body: not a request, or a bad signature. */
	csr[strlen(csr) / 2] ^= 0x01;
	assert_int_equal(pool_ca_check_csr(csr, strlen(csr), "host-1", &e), -1);
	assert_int_equal(e.kind, CERR_INVALID);
	assert_int_equal(pool_ca_check_csr("junk", 4, "host-1", &e), -1);
	free(key);
	free(csr);
}

static void test_sign(void **state)
{
	char *ca, *ca_key, *other, *other_key, *plain, *plain_key, *key, *csr, *cert;
	char hash[POOL_CA_HASH_HEX + 1], hash2[POOL_CA_HASH_HEX + 1], cn[64];
	gnutls_x509_crt_t c, a;
	gnutls_datum_t d;
	unsigned status = 1, critical;
	unsigned char ip[16];
	size_t iplen = sizeof(ip);
	struct cerr e;

	(void)state;
	make_ca(true, &ca, &ca_key);
	make_ca(true, &other, &other_key);
	make_ca(false, &plain, &plain_key);
	assert_int_equal(pool_ca_hash(ca, ca_key, hash, &e), 0);
	assert_int_equal(strlen(hash), POOL_CA_HASH_HEX);
	assert_int_equal(pool_ca_hash(ca, NULL, hash2, &e), 0);
	assert_string_equal(hash, hash2);
	assert_int_equal(pool_ca_hash(other, NULL, hash2, &e), 0);
	assert_string_not_equal(hash, hash2);
	assert_int_equal(pool_ca_hash(ca, other_key, hash2, &e), -1); /* not its key */
	assert_int_equal(pool_ca_hash(plain, plain_key, hash2, &e), -1); /* not a CA */
	assert_int_equal(pool_ca_make_key_csr("host-1", &key, &csr, &e), 0);
	assert_int_equal(pool_ca_sign(ca, ca_key, csr, "host-2", NULL, &cert, &e), -1);
	assert_int_equal(pool_ca_sign(ca, ca_key, csr, "host-1", "10.1.2.3", &cert, &e), 0);
	assert_int_equal(pool_ca_cert_cn(cert, cn, sizeof(cn)), 0);
	assert_string_equal(cn, "host-1");
	/* It verifies against the CA, not against another; not a CA itself. */
	gnutls_x509_crt_init(&c);
	gnutls_x509_crt_init(&a);
	d = (gnutls_datum_t){ (unsigned char *)cert, (unsigned)strlen(cert) };
	assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM), 0);
	d = (gnutls_datum_t){ (unsigned char *)ca, (unsigned)strlen(ca) };
	assert_int_equal(gnutls_x509_crt_import(a, &d, GNUTLS_X509_FMT_PEM), 0);
	assert_int_equal(gnutls_x509_crt_verify(c, &a, 1, 0, &status), 0);
	assert_int_equal(status, 0);
	assert_true(gnutls_x509_crt_get_ca_status(c, &critical) <= 0);
	assert_int_equal(gnutls_x509_crt_get_subject_alt_name(c, 1, ip, &iplen, NULL),
			 GNUTLS_SAN_IPADDRESS);
	assert_int_equal(iplen, 4);
	assert_memory_equal(ip, "\x0a\x01\x02\x03", 4);
	gnutls_x509_crt_deinit(a);
	gnutls_x509_crt_init(&a);
	d = (gnutls_datum_t){ (unsigned char *)other, (unsigned)strlen(other) };
	assert_int_equal(gnutls_x509_crt_import(a, &d, GNUTLS_X509_FMT_PEM), 0);
	gnutls_x509_crt_verify(c, &a, 1, 0, &status);
	assert_int_not_equal(status, 0);
	gnutls_x509_crt_deinit(a);
	gnutls_x509_crt_deinit(c);
	free(ca), free(ca_key), free(other), free(other_key), free(plain), free(plain_key);
	free(key), free(csr), free(cert);
}

static void test_token(void **state)
{
	char ok[POOL_TOKEN_LEN + 1], bad[POOL_TOKEN_LEN + 2], hash[65];
	struct pool_token t;
	struct cerr e;

	(void)state;
	snprintf(ok, sizeof(ok), "%s.%s.%s", "0a1b2c", "00112233445566778899aabbccddeeff",
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_int_equal(pool_token_parse(ok, &t, &e), 0);
	assert_string_equal(t.id, "0a1b2c");
	assert_string_equal(t.secret, "00112233445566778899aabbccddeeff");
	assert_int_equal(strlen(t.ca_hash), POOL_CA_HASH_HEX);
	memcpy(bad, ok, sizeof(ok));
	bad[0] = 'A'; /* uppercase */
	assert_int_equal(pool_token_parse(bad, &t, &e), -1);
	assert_string_equal(e.field, "token");
	memcpy(bad, ok, sizeof(ok));
	bad[6] = '-';
	assert_int_equal(pool_token_parse(bad, &t, &e), -1);
	snprintf(bad, sizeof(bad), "%sa", ok); /* too long */
	assert_int_equal(pool_token_parse(bad, &t, &e), -1);
	assert_int_equal(pool_token_parse("", &t, &e), -1);
	assert_int_equal(pool_token_parse(NULL, &t, &e), -1);
	assert_int_equal(pool_token_secret_hash("abc", hash), 0);
	assert_string_equal(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(pool_hex_eq("abc", "abc"));
	assert_false(pool_hex_eq("abc", "abd"));
	assert_false(pool_hex_eq("abc", "ab"));
	assert_false(pool_hex_eq("ab", "abc"));
}

static void test_url(void **state)
{
	char host[64];
	struct cerr e;

	(void)state;
	assert_int_equal(pool_url_host("https://10.0.0.2:8419", "a", host, sizeof(host), &e), 0);
	assert_string_equal(host, "10.0.0.2");
	assert_int_equal(pool_url_host("https://[fd00::1]:8419/", "a", host, sizeof(host), &e), 0);
	assert_string_equal(host, "fd00::1");
	assert_int_equal(pool_url_host("http://10.0.0.2:8419", "a", host, sizeof(host), &e), -1);
	assert_int_equal(pool_url_host("https://10.0.0.2", "a", host, sizeof(host), &e), -1);
	assert_int_equal(pool_url_host("https://10.0.0.2:84/x", "a", host, sizeof(host), &e), -1);
	assert_int_equal(pool_url_host("https://a b:1", "a", host, sizeof(host), &e), -1);
}

static void test_join_req(void **state)
{
	char *key, *csr, token[POOL_TOKEN_LEN + 1];
	struct pool_join_req r;
	struct cerr e;
	json_t *b;

	(void)state;
	snprintf(token, sizeof(token), "%s.%s.%s", "0a1b2c", "00112233445566778899aabbccddeeff",
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_int_equal(pool_ca_make_key_csr("host-1", &key, &csr, &e), 0);
	b = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "token", token, "name", "host-1", "csr", csr,
		      "address", "https://10.0.0.2:8419", "memory_mib", 1024, "cpus", 2);
	assert_int_equal(pool_join_req_parse(b, &r, &e), 0);
	assert_string_equal(r.name, "host-1");
	assert_int_equal(r.cpus, 2);
	assert_int_equal(r.memory_mib, 1024);
	json_object_set_new(b, "name", json_string("host-2")); /* not the CSR's */
	assert_int_equal(pool_join_req_parse(b, &r, &e), -1);
	assert_string_equal(e.field, "csr");
	json_object_set_new(b, "name", json_string("host-1"));
	json_object_set_new(b, "cpus", json_integer(0));
	assert_int_equal(pool_join_req_parse(b, &r, &e), -1);
	assert_string_equal(e.field, "cpus");
	json_object_set_new(b, "cpus", json_integer(2));
	json_object_set_new(b, "admin", json_true());
	assert_int_equal(pool_join_req_parse(b, &r, &e), -1);
	assert_string_equal(e.field, "admin");
	json_object_del(b, "admin");
	json_object_set_new(b, "name", json_string("../etc"));
	assert_int_equal(pool_join_req_parse(b, &r, &e), -1);
	assert_string_equal(e.field, "name");
	json_decref(b);
	free(key);
	free(csr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csr),   cmocka_unit_test(test_sign),
		cmocka_unit_test(test_token), cmocka_unit_test(test_url),
		cmocka_unit_test(test_join_req),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
