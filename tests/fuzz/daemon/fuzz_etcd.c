/* fuzz_etcd.c: what the etcd store reads from the network, on arbitrary
 * bytes: the gateway's replies (range, txn, write headers), watch stream
 * messages, base64 keys and values, and the records stored under the
 * pool's keys (definitions, runtime records, jobs, checkpoints, hosts),
 * which any host of the pool may have written. Valid base64 must decode to
 * what encodes back to it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "etcd.h"
#include "etcd_records.h"

static void fuzz_b64(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *dec, *enc, *back;
	size_t len, blen;

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = 0;
	if (etcd_b64_decode(s, &dec, &len) == 0) {
		enc = etcd_b64_encode(dec, len);
		if (enc && etcd_b64_decode(enc, &back, &blen) == 0) {
			if (blen != len || memcmp(back, dec, len))
				abort(); /* encode(decode(x)) must decode to the same bytes */
			free(back);
		}
		free(enc);
		free(dec);
	}
	free(s);
}

static void fuzz_records(json_t *j)
{
	struct store_runtime rt = { 0 };
	struct store_job job;
	struct etcd_kvs kvs;
	struct etcd_kv kv;
	struct vmdef d;
	int64_t rev;
	bool ok;
	json_t *o;

	if (etcd_json_range(j, &kvs) == 0)
		etcd_kvs_free(&kvs);
	if (etcd_json_txn(j, &ok, &rev) == 0 && etcd_json_revision(j, &rev) != 0)
		abort(); /* a txn reply that reads has a header that reads */
	if (etcd_json_kv(j, &kv) == 0)
		etcd_kv_free(&kv);
	{
		struct etcd_kv got[2];

		if (etcd_json_txn_reads(j, got, 2) == 0) {
			etcd_kv_free(&got[0]);
			etcd_kv_free(&got[1]);
		} else if (got[0].key || got[1].key) {
			abort(); /* a refused reply leaves nothing to free */
		}
	}
	if (etcd_rec_vmdef(j, &d) == 0) {
		/* What was read writes back and reads the same. */
		json_t *again = etcd_rec_vmdef_json(&d);
		struct vmdef d2;

		if (!again || etcd_rec_vmdef(again, &d2) != 0)
			abort();
		vmdef_free(&d2);
		json_decref(again);
	}
	vmdef_free(&d);
	if (etcd_rec_runtime(j, &rt) == 0)
		json_decref(etcd_rec_runtime_json(&rt));
	if (etcd_rec_job(j, &job) == 0) {
		json_decref(etcd_rec_job_json(&job));
		json_decref(job.data);
	}
	json_decref(etcd_rec_checkpoint(j));
	o = etcd_rec_host(j, true);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct etcd_watch_msg m;
	json_t *j;

	if (etcd_json_watch_msg((const char *)data, size, &m) == 0)
		etcd_watch_msg_free(&m);
	fuzz_b64(data, size);
	j = json_loadb((const char *)data, size, 0, NULL);
	if (j) {
		fuzz_records(j);
		json_decref(j);
	}
	return 0;
}
