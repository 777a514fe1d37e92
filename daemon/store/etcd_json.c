/* etcd_json.c: the JSON side of etcd's v3 gateway: base64 bytes, int64s
 * that come as strings, and the replies of range, txn and the watch
 * stream. No HTTP: the fuzz target (tests/fuzz/daemon/fuzz_etcd.c) drives
 * these on arbitrary bytes, since the replies come from the network. */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>

char *etcd_b64_encode(const void *data, size_t len)
{
	gnutls_datum_t in = { .data = (unsigned char *)data, .size = (unsigned)len };
	gnutls_datum_t out = { 0 };
	char *s;

	if (len > UINT32_MAX / 2)
		return NULL;
	if (len == 0)
		return strdup("");
	if (gnutls_base64_encode2(&in, &out) < 0)
		return NULL;
	s = malloc(out.size + 1);
	if (s) {
		memcpy(s, out.data, out.size);
		s[out.size] = 0;
	}
	gnutls_free(out.data);
	return s;
}

int etcd_b64_decode(const char *s, char **dst, size_t *len)
{
	gnutls_datum_t in = { .data = (unsigned char *)s, .size = (unsigned)strlen(s) };
	gnutls_datum_t out = { 0 };

	*dst = NULL;
	*len = 0;
	if (strlen(s) > UINT32_MAX / 2)
		return -EINVAL;
	if (!in.size) {
		*dst = strdup("");
		return *dst ? 0 : -ENOMEM;
	}
	/* gnutls also skips whitespace: refuse it, so that only one spelling of
	 * a key decodes. */
	if (strpbrk(s, " \t\r\n"))
		return -EINVAL;
	if (gnutls_base64_decode2(&in, &out) < 0)
		return -EINVAL;
	*dst = malloc((size_t)out.size + 1);
	if (!*dst) {
		gnutls_free(out.data);
		return -ENOMEM;
	}
	memcpy(*dst, out.data, out.size);
	(*dst)[out.size] = 0;
	*len = out.size;
	gnutls_free(out.data);
	return 0;
}

int etcd_json_int64(json_t *obj, const char *field, int64_t *out)
{
	json_t *v = json_object_get(obj, field);
	const char *s;
	char *end;
	long long n;

	*out = 0;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	s = json_string_value(v);
	if (!s || !*s || strlen(s) > 20)
		return -EINVAL;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = (int64_t)n;
	return 0;
}

void etcd_kv_free(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void etcd_kvs_free(struct etcd_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++)
		etcd_kv_free(&kvs->kv[i]);
	free(kvs->kv);
	memset(kvs, 0, sizeof(*kvs));
}

int etcd_json_kv(json_t *obj, struct etcd_kv *kv)
{
	const char *key = json_string_value(json_object_get(obj, "key"));
	const char *value = json_string_value(json_object_get(obj, "value"));
	size_t klen;
	int ret;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(obj) || !key)
		return -EINVAL;
	if ((json_object_get(obj, "value") && !value))
		return -EINVAL;
	ret = etcd_b64_decode(key, &kv->key, &klen);
	if (!ret && strlen(kv->key) != klen)
		ret = -EINVAL; /* a NUL inside: not one of our keys */
	if (!ret)
		ret = etcd_b64_decode(value ? value : "", &kv->value, &kv->value_len);
	if (!ret)
		ret = etcd_json_int64(obj, "create_revision", &kv->create_rev) ?:
		      etcd_json_int64(obj, "mod_revision", &kv->mod_rev) ?:
		      etcd_json_int64(obj, "version", &kv->version) ?:
		      etcd_json_int64(obj, "lease", &kv->lease);
	if (ret)
		etcd_kv_free(kv);
	return ret;
}

int etcd_json_revision(json_t *reply, int64_t *rev)
{
	json_t *h = json_object_get(reply, "header");

	*rev = 0;
	if (!json_is_object(reply) || (h && !json_is_object(h)))
		return -EINVAL;
	return etcd_json_int64(h, "revision", rev);
}

int etcd_json_range(json_t *reply, struct etcd_kvs *out)
{
	json_t *kvs = json_object_get(reply, "kvs"), *v;
	size_t i;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = etcd_json_revision(reply, &out->revision);
	if (ret)
		return ret;
	if (kvs && !json_is_array(kvs))
		return -EINVAL;
	out->more = json_is_true(json_object_get(reply, "more"));
	if (!json_array_size(kvs))
		return 0;
	out->kv = calloc(json_array_size(kvs), sizeof(*out->kv));
	if (!out->kv)
		return -ENOMEM;
	json_array_foreach(kvs, i, v) {
		ret = etcd_json_kv(v, &out->kv[out->n]);
		if (ret) {
			etcd_kvs_free(out);
			return ret;
		}
		out->n++;
	}
	return 0;
}

int etcd_json_txn(json_t *reply, bool *succeeded, int64_t *rev)
{
	json_t *s = json_object_get(reply, "succeeded");

	*succeeded = false;
	if (s && !json_is_boolean(s))
		return -EINVAL;
	*succeeded = json_is_true(s);
	return etcd_json_revision(reply, rev);
}

int etcd_json_txn_reads(json_t *reply, struct etcd_kv *got, size_t n)
{
	json_t *res = json_object_get(reply, "responses"), *r;
	size_t i, k = 0;
	int ret = 0;

	for (i = 0; i < n; i++)
		memset(&got[i], 0, sizeof(got[i]));
	if (res && !json_is_array(res))
		return -EINVAL;
	json_array_foreach(res, i, r) {
		json_t *range = json_object_get(r, "response_range"), *kvs;

		if (!json_is_object(r))
			ret = -EINVAL;
		if (!range || ret || k >= n)
			continue;
		kvs = json_object_get(range, "kvs");
		if (kvs && !json_is_array(kvs))
			ret = -EINVAL;
		else if (json_array_size(kvs))
			ret = etcd_json_kv(json_array_get(kvs, 0), &got[k]);
		k++;
	}
	if (ret)
		for (i = 0; i < n; i++)
			etcd_kv_free(&got[i]);
	return ret;
}

void etcd_watch_msg_free(struct etcd_watch_msg *msg)
{
	for (size_t i = 0; i < msg->nr_events; i++)
		etcd_kv_free(&msg->events[i].kv);
	free(msg->events);
	memset(msg, 0, sizeof(*msg));
}

int etcd_json_watch_msg(const char *line, size_t len, struct etcd_watch_msg *msg)
{
	json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *res = json_object_get(root, "result"), *evs, *ev;
	size_t i;
	int ret = -EINVAL;

	memset(msg, 0, sizeof(*msg));
	if (!json_is_object(res))
		goto out; /* also {"error": ...}: the stream failed */
	msg->created = json_is_true(json_object_get(res, "created"));
	msg->canceled = json_is_true(json_object_get(res, "canceled"));
	ret = etcd_json_revision(res, &msg->revision) ?:
	      etcd_json_int64(res, "compact_revision", &msg->compact_revision);
	if (ret)
		goto out;
	evs = json_object_get(res, "events");
	ret = -EINVAL;
	if (evs && !json_is_array(evs))
		goto out;
	ret = 0;
	if (!json_array_size(evs))
		goto out;
	msg->events = calloc(json_array_size(evs), sizeof(*msg->events));
	if (!msg->events) {
		ret = -ENOMEM;
		goto out;
	}
	json_array_foreach(evs, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		struct etcd_event *e = &msg->events[msg->nr_events];

		if (!json_is_object(ev) || (type && strcmp(type, "PUT") && strcmp(type, "DELETE")) ||
		    (json_object_get(ev, "type") && !type)) {
			ret = -EINVAL;
			break;
		}
		e->deleted = type && !strcmp(type, "DELETE");
		ret = etcd_json_kv(json_object_get(ev, "kv"), &e->kv);
		if (ret)
			break;
		msg->nr_events++;
	}
out:
	if (ret)
		etcd_watch_msg_free(msg);
	json_decref(root);
	return ret;
}
