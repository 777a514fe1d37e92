/* json_find.h: lookups in arrays of JSON objects (jansson). */
#pragma once
#include <string.h>

#include <jansson.h>

/* The first object of arr whose member key is the string value, or NULL. */
static inline json_t *json_find_by(json_t *arr, const char *key, const char *value)
{
	size_t i;
	json_t *o;

	json_array_foreach(arr, i, o) {
		const char *v = json_string_value(json_object_get(o, key));

		if (v && !strcmp(v, value))
			return o;
	}
	return NULL;
}
