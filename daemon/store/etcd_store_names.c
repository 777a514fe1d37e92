/* etcd_store_names.c: the pool-wide index of VM names (P/names/NAME ->
 * UUID), written in the same transaction as the definition: a name is
 * created only if absent (compare version == 0), so two hosts that define
 * one name at once cannot both win (docs/pool.md, "Placement on start"). */
#include "etcd_store_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

int es_name_claim(struct es *es, const struct vmdef *def)
{
	char key[ES_KEY_MAX];
	struct etcd_kv kv;
	int ret;

	if (!es_part_ok(def->name))
		return -EINVAL;
	ret = es_key(es, key, "names/%s", def->name);
	if (ret)
		return ret;
	ret = etcd_get(es->etcd, key, &kv);
	if (!ret) {
		bool ours = !strcmp(kv.value, def->uuid);

		if (!ours)
			log_info("store: the name %s is VM %s's in the pool", def->name, kv.value);
		etcd_kv_free(&kv);
		return ours ? 0 : -EEXIST;
	}
	if (ret != -ENOENT)
		return ret;
	for (size_t i = 0; i < es->nr_absent; i++)
		if (!strcmp(es->absent[i], key))
			return 0;
	if (es->nr_absent >= ES_ABSENT_MAX)
		return -E2BIG;
	snprintf(es->absent_val[es->nr_absent], sizeof(es->absent_val[0]), "%s", def->uuid);
	snprintf(es->absent[es->nr_absent++], ES_KEY_MAX, "%s", key);
	return es_add(es, key, NULL, def->uuid, strlen(def->uuid));
}

int es_name_release(struct es *es, const char *uuid)
{
	char key[ES_KEY_MAX], name[128] = "";
	struct etcd_kv kv;
	json_t *j;
	int ret = es_key(es, key, "vms/%s", uuid);

	if (ret)
		return ret;
	ret = etcd_get(es->etcd, key, &kv);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	j = json_loadb(kv.value, kv.value_len, 0, NULL);
	snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(j, "name")) ?: "");
	json_decref(j);
	etcd_kv_free(&kv);
	if (!es_part_ok(name) || es_key(es, key, "names/%s", name))
		return 0;
	ret = etcd_get(es->etcd, key, &kv);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	ret = strcmp(kv.value, uuid) ? 0 : es_add(es, key, NULL, NULL, 0);
	etcd_kv_free(&kv);
	return ret;
}

int es_absent_taken(struct es *es)
{
	for (size_t i = 0; i < es->nr_absent; i++) {
		struct etcd_kv kv;

		if (!etcd_get(es->etcd, es->absent[i], &kv)) {
			bool other = strcmp(kv.value, es->absent_val[i]) != 0;

			etcd_kv_free(&kv);
			if (other)
				return -EEXIST;
		}
	}
	return 0;
}
